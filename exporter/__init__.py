"""clip-onnx: OpenAI CLIP as three verified ONNX graphs.

Modules, one concern each: `variants` (the variant table), `weights` (where weights come from),
`export` (how a graph is built), `verify` (how it is checked), `manifest` (what ships beside it),
`pipeline` (one run end to end), `cli` (the command line).
"""
