"""The exported files without PyTorch: load a variant folder, embed images and texts, score them.

Needs only onnxruntime, numpy, Pillow, tokenizers and ftfy (the plain `pip install clip-onnx`);
importing this module never imports torch. Tokens come from the folder's `tokenizer.json` and pixels
from `clip_onnx.preprocess`, both proven equal to CLIP's own in the tests.

Which graphs to load: `similarity` rebuilds `CLIP.forward` from the two encoders and the manifest's
`logit_scale`, so a program that embeds texts once and scores many images (zero-shot
classification, search) never needs `<name>.onnx`, the largest file. `forward` runs that file, for
consumers that want one call per image batch and text batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tokenizers
from PIL import Image

from clip_onnx import manifest, preprocess, tokenizer
from clip_onnx.errors import ClipOnnxError

ImageInput = str | Path | Image.Image


def unit(embeds: np.ndarray) -> np.ndarray:
    """Every row scaled to unit length, as CLIP does before comparing embeddings."""
    return embeds / np.linalg.norm(embeds, axis=1, keepdims=True)


def logits(image_embeds: np.ndarray, text_embeds: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """`CLIP.forward`'s scaled cosine similarity from the two towers' embeddings, in float32."""
    per_image = (np.float32(logit_scale) * unit(image_embeds) @ unit(text_embeds).T).astype(np.float32)
    return per_image, per_image.T


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Model:
    """One exported variant folder. Sessions open on first use, one per graph."""

    def __init__(self, folder: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)):
        self.folder = Path(folder)
        self.manifest = manifest.read(self.folder)
        self.providers = list(providers)
        self.resolution: int = self.manifest["preprocessing"]["resolution"]
        self.logit_scale: float = self.manifest["logit_scale"]["exp"]
        path = self.folder / tokenizer.TOKENIZER
        if not path.is_file():
            raise ClipOnnxError(f"{path} is missing; export the variant again with this clip-onnx")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path))
        self._sessions: dict[str, ort.InferenceSession] = {}

    def session(self, graph: str) -> ort.InferenceSession:
        if graph not in self._sessions:
            spec = self.manifest["graphs"].get(graph)
            if spec is None:
                raise ClipOnnxError(f"{self.folder} has no {graph} graph (exported with --graphs "
                                    f"{','.join(self.manifest['graphs'])}); export it with that graph")
            self._sessions[graph] = ort.InferenceSession(str(self.folder / spec["file"]), providers=self.providers)
        return self._sessions[graph]

    def pixels(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """Image files or PIL images through CLIP's preprocessing; an array passes as already preprocessed."""
        if isinstance(images, np.ndarray):
            return images.astype(np.float32, copy=False)
        return preprocess.load(images, self.resolution)

    def tokens(self, texts: Sequence[str], truncate: bool = False) -> np.ndarray:
        return tokenizer.encode(self.tokenizer, list(texts), truncate)

    def encode_image(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """`CLIP.encode_image`: [N, embed_dim] float32, not normalised."""
        return self.session("visual").run(None, {"image": self.pixels(images)})[0]

    def encode_text(self, texts: Sequence[str], truncate: bool = False) -> np.ndarray:
        """`CLIP.encode_text`: [N, embed_dim] float32, not normalised."""
        return self.session("transformer").run(None, {"text": self.tokens(texts, truncate)})[0]

    def similarity(self, images: Sequence[ImageInput] | np.ndarray, texts: Sequence[str],
                   truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`CLIP.forward` from the two encoder graphs: (logits_per_image, logits_per_text)."""
        return logits(self.encode_image(images), self.encode_text(texts, truncate), self.logit_scale)

    def forward(self, images: Sequence[ImageInput] | np.ndarray, texts: Sequence[str],
                truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`CLIP.forward` by the forward graph: (logits_per_image, logits_per_text)."""
        outputs = self.session("forward").run(None, {"image": self.pixels(images), "text": self.tokens(texts, truncate)})
        return outputs[0], outputs[1]
