"""What the release workflow runs: `python -m release stage ...` turns verified exports into the exact
files a tag publishes (Hugging Face Hub layout, GitHub Release assets, SHA256SUMS, a release manifest)."""
