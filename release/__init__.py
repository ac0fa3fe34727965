"""What the release workflow runs (`python -m release --help`): the export matrix, staging verified exports
as the exact files a tag publishes, the model card and notes, publishing to the Hugging Face Hub and
GitHub Releases, and an offline rehearsal of it all against a loopback Hub."""
