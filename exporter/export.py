"""Where the three graphs are built: one declarative spec per graph, one generic export path."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from clip_onnx.contract import GraphSpec
from clip_onnx.errors import ClipOnnxError
from exporter import memory, onnx_files

# Batch sizes of the example inputs; verification uses others, so the dynamic axes are exercised.
EXPORT_IMAGE_BATCH, EXPORT_TEXT_BATCH = 2, 3
TEXT_DTYPE = torch.int32


def encode_image(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """`CLIP.encode_image` taking and returning float32 whatever the weights' precision."""
    return model.encode_image(image).float()


def encode_text(model: nn.Module, text: torch.Tensor) -> torch.Tensor:
    """`CLIP.encode_text`, computing only the positions that matter and selecting the end token for ONNX.

    Dead work: CLIP's text transformer is causal, so the features at a row's end token depend only on
    the tokens up to it. The batch is cut after its longest end token, inside the graph, before the
    embedding: a short caption runs a few of the 77 positions. Each block is CLIP's
    `ResidualAttentionBlock` with its causal mask cut to match.

    End-token selection: CLIP picks each row's features at `text.argmax(-1)` (the end token has the
    highest id) with advanced indexing. Exported, that is an integer ArgMax, which ONNX Runtime lacks
    for int64 on some builds (onnxruntime#10068), feeding an `aten::index`. Here the ids are cast to
    float32 (exact: ids < 2**24) for ArgMax, and the row is taken with Gather; ArgMax keeps the first
    maximum, as torch does, so every token layout selects the same position as CLIP.
    """
    end = text.float().argmax(dim=-1)
    length = end.max().item() + 1
    torch._check(length >= 1)
    torch._check(length <= text.shape[1])
    x = model.token_embedding(text[:, :length]).type(model.dtype)
    x = x + model.positional_embedding[:length].type(model.dtype)
    x = x.permute(1, 0, 2)
    for block in model.transformer.resblocks:
        mask = block.attn_mask[:length, :length].to(dtype=x.dtype, device=x.device)
        normed = block.ln_1(x)
        x = x + block.attn(normed, normed, normed, need_weights=False, attn_mask=mask)[0]
        x = x + block.mlp(block.ln_2(x))
    x = model.ln_final(x.permute(1, 0, 2)).type(model.dtype)
    x = torch.gather(x, 1, end.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)
    return (x @ model.text_projection).float()


def logits(model: nn.Module, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`CLIP.forward`'s scaled cosine similarity, computed in float32."""
    image_embeds = image_embeds / image_embeds.norm(dim=1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=1, keepdim=True)
    logits_per_image = model.logit_scale.float().exp() * image_embeds @ text_embeds.t()
    return logits_per_image, logits_per_image.t()


class VisualGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return encode_image(self.model, image)


class TextGraph(VisualGraph):
    def forward(self, text: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return encode_text(self.model, text)


class ForwardGraph(VisualGraph):
    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return logits(self.model, encode_image(self.model, image), encode_text(self.model, text))


# Which module computes each graph of the contract (`clip_onnx.contract.GRAPHS`).
WRAPPERS: dict[str, type[nn.Module]] = {"forward": ForwardGraph, "visual": VisualGraph, "transformer": TextGraph}


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm of CLIP's ResNets into the convolution before it, in place (eval semantics).

    torch's exporter folds them anyway (onnxscript's rewrite rules), but into new tensors while the
    model still holds the old ones, so every convolution weight exists twice at its peak
    (docs/measurements.md). Here each convolution's weight is replaced as it is
    folded, so at most one layer's weight exists twice. CLIP follows each convolution by the BatchNorm
    of the same number (`conv1` / `bn1`), or in a downsample Sequential by the next one (`0` / `1`)."""
    for parent in list(model.modules()):
        children = dict(parent.named_children())
        for name, conv in children.items():
            partner = name.replace("conv", "bn", 1) if name.startswith("conv") else str(int(name) + 1) if name.isdigit() else ""
            norm = children.get(partner)
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                continue
            with torch.no_grad():
                conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                              norm.running_var, norm.eps, norm.weight, norm.bias)
            setattr(parent, partner, nn.Identity())
    return model


def to_precision(model: nn.Module, precision: str) -> nn.Module:
    """Convert in place. fp16 halves every weight but LayerNorm's: CLIP's LayerNorm computes in
    float32, and ONNX's LayerNormalization needs its scale in the input's type."""
    if precision == "fp16":
        model.half()
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.float()
    return model


def example_inputs(model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    resolution = model.visual.input_resolution
    return {
        "image": torch.randn(EXPORT_IMAGE_BATCH, 3, resolution, resolution, device=device),
        "text": torch.randint(1, model.vocab_size, (EXPORT_TEXT_BATCH, model.context_length),
                              dtype=TEXT_DTYPE, device=device),
    }


def weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def export_graph(model: nn.Module, spec: GraphSpec, path: Path, opset: int) -> list[Path]:
    """Export one graph to `path` and its external data; return the files."""
    device = next(model.parameters()).device
    wrapper = WRAPPERS[spec.key](model).eval()
    examples = example_inputs(model, device)
    batch = {"image": torch.export.Dim("image_batch", min=1), "text": torch.export.Dim("text_batch", min=1)}
    quiet = io.StringIO()
    with _quiet_loggers(), contextlib.redirect_stdout(quiet), torch.no_grad(), warnings.catch_warnings():
        # CLIP's attention blocks re-assign their constant causal mask on every call; harmless here.
        warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
        program = torch.onnx.export(
            wrapper,
            tuple(examples[n] for n in spec.inputs),
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            dynamic_shapes={n: {0: batch[n]} for n in spec.inputs},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
        actual = program.model.opset_imports.get("", program.model.opset_imports.get("ai.onnx"))
        if actual != opset:
            raise ClipOnnxError(f"torch's exporter wrote opset {actual} for {path.name} when opset {opset} was "
                                f"asked; use --opset {actual}")
        # the weights go to external data, which `exporter.shared_weights` lays out once every graph is written;
        # streamed tensor by tensor, never serialised as one protobuf message (2 GiB at most)
        program.save(path, external_data=True)
        files = [path, *onnx_files.external_files(path)]
    del program
    memory.forget_rewrite_matches()
    memory.trim()
    return files


@contextlib.contextmanager
def _quiet_loggers():
    """torch's exporter and onnxscript log progress chatter; keep our own progress lines readable."""
    names = ("torch.onnx", "onnxscript", "torch.export", "torch._export")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
