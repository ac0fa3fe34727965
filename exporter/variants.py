"""The CLIP variants as data: one row per variant, one generic way to build each.

Hyperparameters are the ones `clip.model.build_model` infers from OpenAI's checkpoints, so a
variant built here with random weights has exactly the architecture of the published one. torch and
`clip` are imported only where a model is built or OpenAI's URL list is read, so the table itself
serves the command line of a torch-free (runtime-only) install.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clip_onnx.errors import ClipOnnxError

if TYPE_CHECKING:
    import torch

    from exporter.hub_weights import HubPin

OPENAI_URL_BASE = "https://openaipublic.azureedge.net/clip/models"


@dataclass(frozen=True)
class Architecture:
    """The arguments of `clip.model.CLIP`; `vision_layers` is a tuple for ResNets, an int for ViTs."""

    embed_dim: int
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]
    vision_width: int
    vision_patch_size: int | None
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    @property
    def family(self) -> str:
        return "ResNet" if isinstance(self.vision_layers, tuple) else "ViT"

    def build(self) -> torch.nn.Module:
        """A CLIP model of this architecture with CLIP's own initialisation, in eval mode."""
        from exporter._clip import clip_model

        return clip_model.CLIP(**dataclasses.asdict(self)).eval()

    def parameter_count(self) -> int:
        """The number of parameters of `build()`, counted from the architecture without torch (so
        `clip-onnx list` answers at once); tests/test_cli.py holds it equal to torch's count."""
        def blocks(width: int, layers: int) -> int:  # residual attention blocks: attention, MLP, 2 LayerNorms
            return layers * (12 * width * width + 13 * width)

        text = (self.vocab_size * self.transformer_width + self.context_length * self.transformer_width
                + blocks(self.transformer_width, self.transformer_layers) + 2 * self.transformer_width
                + self.transformer_width * self.embed_dim + 1)  # ..., ln_final, text_projection, logit_scale
        width = self.vision_width
        if isinstance(self.vision_layers, int):  # VisionTransformer
            grid = self.image_resolution // self.vision_patch_size
            visual = (3 * self.vision_patch_size ** 2 * width + width + (grid * grid + 1) * width + 4 * width
                      + blocks(width, self.vision_layers) + width * self.embed_dim)
            return text + visual
        # ModifiedResNet: three-convolution stem, bottleneck layers, attention pooling
        half = width // 2
        visual = 3 * half * 9 + half * half * 9 + half * width * 9 + 2 * (half + half + width)
        inplanes = width
        for index, count in enumerate(self.vision_layers):
            planes = width * 2 ** index
            for block in range(count):
                visual += inplanes * planes + planes * planes * 9 + planes * 4 * planes + 2 * (planes + planes + 4 * planes)
                if block == 0 and (index > 0 or inplanes != 4 * planes):  # downsample: 1x1 convolution and BatchNorm
                    visual += inplanes * 4 * planes + 2 * 4 * planes
                inplanes = 4 * planes
        dim, grid = width * 32, self.image_resolution // 32
        visual += (grid * grid + 1) * dim + 3 * (dim * dim + dim) + dim * self.embed_dim + self.embed_dim
        return text + visual

    @classmethod
    def of(cls, model: torch.nn.Module) -> Architecture:
        """Read the architecture back from a built model (the inverse of `build`)."""
        from exporter._clip import clip_model

        visual = model.visual
        if isinstance(visual, clip_model.VisionTransformer):
            layers: int | tuple[int, int, int, int] = visual.transformer.layers
            width = visual.conv1.out_channels
            patch: int | None = visual.conv1.kernel_size[0]
        else:
            layers = tuple(len(getattr(visual, f"layer{i}")) for i in range(1, 5))  # type: ignore[assignment]
            width = visual.layer1[0].conv1.in_channels
            patch = None
        return cls(
            embed_dim=model.text_projection.shape[1],
            image_resolution=visual.input_resolution,
            vision_layers=layers,
            vision_width=width,
            vision_patch_size=patch,
            context_length=model.context_length,
            vocab_size=model.vocab_size,
            transformer_width=model.transformer.width,
            transformer_heads=model.transformer.resblocks[0].attn.num_heads,
            transformer_layers=model.transformer.layers,
        )

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["family"] = self.family
        return data


@dataclass(frozen=True)
class Variant:
    """A named architecture and, for OpenAI's variants, where its weights are published."""

    name: str
    architecture: Architecture
    # OpenAI's own Hub repo of the variant (transformers format), where one exists: a card's `base_model`
    openai_hub: str | None = None

    @property
    def folder_name(self) -> str:
        """`ViT-B/32` -> `ViT-B-32`, `ViT-L/14@336px` -> `ViT-L-14-336px`."""
        return folder_name(self.name)

    @property
    def published(self) -> bool:
        """OpenAI published weights for it: it has a row in the Hub pin table (`weight_pins.json`)."""
        from exporter import hub_weights

        return self.name in hub_weights.pins()

    @property
    def hub(self) -> HubPin:
        """Where its weights live on the Hugging Face Hub, and what a release expects there."""
        from exporter import hub_weights

        if not self.published:
            raise ClipOnnxError(f"{self.name} is a test configuration with no published weights; use --weights random")
        return hub_weights.pins()[self.name]

    def url(self, base: str = OPENAI_URL_BASE) -> str:
        """Where OpenAI publishes the checkpoint, or the same path under a mirror `base`.

        The URL list is `clip`'s own; its second-to-last path segment is the file's SHA-256.
        """
        if not self.published:
            raise ClipOnnxError(f"{self.name} is a test configuration with no published weights; use --weights random")
        official = _openai_urls().get(self.name)
        if official is None:
            raise ClipOnnxError(f"the clip package lists no OpenAI URL for {self.name}")
        return official.replace(OPENAI_URL_BASE, base.rstrip("/"), 1)

    @property
    def sha256(self) -> str:
        return self.url().split("/")[-2]


@functools.cache
def _openai_urls() -> dict[str, str]:
    """OpenAI's checkpoint URLs: `clip/clip.py`'s `_MODELS` table, the single source, read from the
    installed package's file rather than imported, because importing `clip` imports torch (seconds)."""
    spec = importlib.util.find_spec("clip")
    if spec is None:
        raise ModuleNotFoundError("No module named 'clip'", name="clip")  # a runtime-only install: name the extra
    path = Path(spec.submodule_search_locations[0], "clip.py") if spec.submodule_search_locations else None
    body = ast.parse(path.read_text()).body if path and path.is_file() else []
    for node in body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_MODELS"]:
            return ast.literal_eval(node.value)
    raise ClipOnnxError("the installed clip package has no _MODELS table in clip/clip.py; reinstall the [export] extra")


def folder_name(name: str) -> str:
    return name.replace("/", "-").replace("@", "-")


# OpenAI's text tower, the same in every variant: CLIP's 49408-token BPE, 77 tokens, 12 layers.
OPENAI_TEXT = {"context_length": 77, "vocab_size": 49408, "transformer_layers": 12}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("RN50", Architecture(
            embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
            vision_patch_size=None, transformer_width=512, transformer_heads=8, **OPENAI_TEXT)),
        Variant("RN101", Architecture(
            embed_dim=512, image_resolution=224, vision_layers=(3, 4, 23, 3), vision_width=64,
            vision_patch_size=None, transformer_width=512, transformer_heads=8, **OPENAI_TEXT)),
        Variant("RN50x4", Architecture(
            embed_dim=640, image_resolution=288, vision_layers=(4, 6, 10, 6), vision_width=80,
            vision_patch_size=None, transformer_width=640, transformer_heads=10, **OPENAI_TEXT)),
        Variant("RN50x16", Architecture(
            embed_dim=768, image_resolution=384, vision_layers=(6, 8, 18, 8), vision_width=96,
            vision_patch_size=None, transformer_width=768, transformer_heads=12, **OPENAI_TEXT)),
        Variant("RN50x64", Architecture(
            embed_dim=1024, image_resolution=448, vision_layers=(3, 15, 36, 10), vision_width=128,
            vision_patch_size=None, transformer_width=1024, transformer_heads=16, **OPENAI_TEXT)),
        Variant("ViT-B/32", Architecture(
            embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
            vision_patch_size=32, transformer_width=512, transformer_heads=8, **OPENAI_TEXT),
            openai_hub="openai/clip-vit-base-patch32"),
        Variant("ViT-B/16", Architecture(
            embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
            vision_patch_size=16, transformer_width=512, transformer_heads=8, **OPENAI_TEXT),
            openai_hub="openai/clip-vit-base-patch16"),
        Variant("ViT-L/14", Architecture(
            embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
            vision_patch_size=14, transformer_width=768, transformer_heads=12, **OPENAI_TEXT),
            openai_hub="openai/clip-vit-large-patch14"),
        Variant("ViT-L/14@336px", Architecture(
            embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
            vision_patch_size=14, transformer_width=768, transformer_heads=12, **OPENAI_TEXT),
            openai_hub="openai/clip-vit-large-patch14-336"),
        # Small configurations of both families with the real tokenizer: fast tests and demos.
        Variant("tiny-ViT", Architecture(
            embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2)),
        Variant("tiny-RN", Architecture(
            embed_dim=256, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8, vision_patch_size=None,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2)),
    ]
}


def get_variant(name: str) -> Variant:
    """Look a variant up by its name or its folder name (`ViT-B-32` works as well as `ViT-B/32`)."""
    for variant in VARIANTS.values():
        if name in (variant.name, variant.folder_name):
            return variant
    raise ClipOnnxError(f"unknown variant {name!r}; valid names: {', '.join(VARIANTS)} (see `clip-onnx list`)")


def known_name(architecture: Architecture) -> str | None:
    """The published variant with exactly this architecture, if any."""
    return next((v.name for v in VARIANTS.values() if v.published and v.architecture == architecture), None)
