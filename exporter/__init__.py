"""clip-onnx's exporter (the `[export]` extra): OpenAI CLIP as three verified ONNX graphs.

Modules, one concern each: `variants` (the variant table), `weights` (where weights come from),
`export` (how a graph is built), `verify` (how it is checked), `tolerances` (how close is close
enough), `manifest` and `tokenizer` (what ships beside the graphs), `quantize`, `memory`, `pipeline`
(one run end to end), `cli` (the `clip-onnx` command). It imports `clip_onnx` for the contract the
runtime reads; `clip_onnx` never imports it.
"""
