"""clip-onnx's runtime: OpenAI CLIP's exported ONNX graphs used with onnxruntime alone, no PyTorch.

    from clip_onnx import Model
    model = Model("ViT-B-32")   # a folder written by `clip-onnx export` or downloaded from a release
    probabilities = model.probabilities(["cat.jpg"], ["a cat", "a dog"])   # softmax of CLIP.forward's logits

Modules, one concern each: `model` (load a folder, embed, score), `tokenizer` and `preprocess` (CLIP's
text and image inputs, equal to CLIP's own), `manifest` (the contract file), `integrity` (SHA-256 checks),
`contract` (the graphs' names, inputs and outputs), `errors`, `cli` (classify, embed). The exporter
(`exporter`, the `[export]` extra) writes what this package reads and imports it; never the reverse.
"""

from clip_onnx.errors import ClipOnnxError

__all__ = ["ClipOnnxError", "Model"]


def __getattr__(name: str):
    # Model imports numpy and onnxruntime on first use, so tools that need only the contract, the
    # manifest or the hashes (the release's publish job installs none of them) can import this package.
    if name == "Model":
        from clip_onnx.model import Model

        return Model
    raise AttributeError(f"module 'clip_onnx' has no attribute {name!r}")
