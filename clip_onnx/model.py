"""The exported files without PyTorch: load a variant folder, embed images and texts, score them.

Needs only onnxruntime, numpy, Pillow, tokenizers and ftfy (the plain `pip install clip-onnx`);
importing this module never imports torch. Tokens come from the folder's `tokenizer.json` and pixels
from `clip_onnx.preprocess`, both proven equal to CLIP's own in the tests.

Which graphs to load: `logits` (and `probabilities`, its softmax) rebuilds `CLIP.forward` from the two encoders and the manifest's
`logit_scale`, so a program that embeds texts once and scores many images (zero-shot
classification, search) never needs `<name>.onnx`, the largest file. `forward` runs that file, for
consumers that want one call per image batch and text batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import ftfy
import numpy as np
import onnxruntime as ort
import tokenizers

from clip_onnx import hub, integrity, manifest, preprocess, tokenizer
from clip_onnx.errors import ClipOnnxError, UsageError

ImageInput = preprocess.ImageSource
# onnxruntime's way to take external data from memory (1.19 and later)
_IN_MEMORY = "add_external_initializers_from_files_in_memory"


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
    """One exported variant folder. Sessions open on first use, one per graph.

    Every file a graph needs (`integrity.needed_files`) is checked against the manifest's SHA-256 before
    it is used (`tokenizer.json` and `preprocess.json` at once if present, a graph and its data files
    when its session opens): a changed file is refused, not run.
    `check_sha256=False` skips that for callers that have already checked the files; the cost is the
    time to hash them, which `bench/hash_cost.py` measures per GB."""

    def __init__(self, folder: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                 check_sha256: bool = True):
        self.manifest = manifest.read(folder)
        self.folder = Path(folder)
        self.providers = list(providers)
        self.check_sha256 = check_sha256
        self.logit_scale: float = self.manifest["logit_scale"]["exp"]
        self.embed_dim: int = self.manifest["architecture"]["embed_dim"]
        self._checked: set[str] = set()
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._mapped: dict[str, list[np.memmap]] = {}
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._preprocessing: preprocess.Preprocessing | None = None
        # A folder may hold only some graphs' files (a text-only download has no preprocess.json): a file
        # present is checked now, a missing one is refused when something needs it.
        tokenizer_file, preprocess_file = integrity.consumer_files(self.manifest)
        if (self.folder / tokenizer_file).exists():
            self.tokenizer
        if (self.folder / preprocess_file).exists():
            self.preprocessing

    @property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """`tokenizer.json`, checked against the manifest and loaded on first use."""
        if self._tokenizer is None:
            file_name = integrity.consumer_files(self.manifest)[0]
            self._check([file_name])
            cleaned_by = self.manifest["tokenizer"].get("ftfy")
            if cleaned_by is not None and cleaned_by != ftfy.__version__:  # other repairs give other token ids
                raise ClipOnnxError(f"{self.folder / manifest.MANIFEST}: tokenizer.ftfy is {json.dumps(cleaned_by)}, "
                                    f"but this environment cleans texts with ftfy {ftfy.__version__}, so token ids "
                                    f"could differ from the export's; install the clip-onnx release that made the "
                                    f"files", "invalid_input")
            self._tokenizer = tokenizers.Tokenizer.from_file(str(self.folder / file_name))
        return self._tokenizer

    @property
    def preprocessing(self) -> preprocess.Preprocessing:
        """`preprocess.json`: every parameter and rule of the pixels, refused in one line if this runtime
        does not implement it; checked against the manifest and read on first use."""
        if self._preprocessing is None:
            file_name = integrity.consumer_files(self.manifest)[1]
            self._check([file_name])
            self._preprocessing = preprocess.Preprocessing.read(self.folder / file_name)
        return self._preprocessing

    @property
    def resolution(self) -> int:
        return self.preprocessing.resolution

    def _check(self, file_names: list[str]) -> None:
        for file_name in file_names:
            if file_name not in self._checked:
                if self.check_sha256:
                    integrity.check_file(self.manifest, self.folder, file_name)
                else:
                    integrity.check_present(self.folder, file_name)
                self._checked.add(file_name)

    def session(self, graph: str) -> ort.InferenceSession:
        if graph not in self._sessions:
            spec = self.manifest["graphs"].get(graph)
            if spec is None:
                raise ClipOnnxError(f"{self.folder} has no {graph} graph (exported with --graphs "
                                    f"{','.join(self.manifest['graphs'])}); export it with that graph", "bad_manifest")
            self._check(integrity.needed_files(self.manifest, [graph]))
            path = self.folder / spec["file"]
            try:
                self._sessions[graph] = self._open(graph, path)
            except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                raise ClipOnnxError(f"onnxruntime cannot load {path} ({first}); download or export it again") from None
        return self._sessions[graph]

    def _open(self, graph: str, path: Path) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(path), providers=self.providers)
        except Exception:
            data = [self.folder / name for name in self.manifest["graphs"][graph]["files"] if name.endswith(".data")]
            if not any(p.is_symlink() for p in data) or not hasattr(ort.SessionOptions, _IN_MEMORY):
                raise
        # onnxruntime 1.24.1 refuses external data behind a symbolic link (every file of a Hugging Face
        # cache snapshot is one): hand it the data files' bytes, mapped from disk, by the names the graph uses.
        mapped = [np.memmap(p, dtype=np.uint8, mode="r") for p in data]
        options = ort.SessionOptions()
        getattr(options, _IN_MEMORY)([p.name for p in data], mapped, [m.nbytes for m in mapped])
        session = ort.InferenceSession(path.read_bytes(), options, providers=self.providers)
        self._mapped[graph] = mapped  # kept as long as the session, which may read the mapped bytes in place
        return session

    @classmethod
    def from_hub(cls, repo: str, revision: str, *, precision: str = "fp32", graphs: Sequence[str] | None = None,
                 cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> Model:
        """A release's variant from the Hugging Face Hub at `revision` (pin a commit), downloading only the
        files of `graphs` (default: all): `Model.from_hub("org/clip-onnx-ViT-B-32", "<commit>",
        graphs=["transformer"])` fetches the text graph, its data, `tokenizer.json` and the manifest."""
        return cls(hub.download(repo, revision, precision=precision, graphs=graphs, cache_dir=cache_dir,
                                endpoint=endpoint, token=token), providers=providers)

    @classmethod
    def from_release(cls, name: str, *, precision: str = "fp32", graphs: Sequence[str] | None = None,
                     cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None,
                     release: dict | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Model:
        """Variant `name` of the release this installed clip-onnx pins (`clip_onnx.pinned`; `release`:
        another table): its Hub repo at the release's tag, every file refused unless it has the SHA-256 the
        package holds for it: `Model.from_release("ViT-B-32")`. A checkout pins none: use `from_hub`."""
        return cls(hub.download_release(name, precision=precision, graphs=graphs, cache_dir=cache_dir,
                                        endpoint=endpoint, token=token, release=release), providers=providers)

    def pixels(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Images through CLIP's preprocessing: paths, the bytes of an image file, binary file objects,
        PIL images or uint8 arrays [H, W, 3] (RGB) or [H, W] (grey); one of them is a batch of one. A
        float32 array [N, 3, R, R] passes as already preprocessed."""
        if isinstance(images, np.ndarray) and images.dtype == np.float32:
            expected = (3, self.resolution, self.resolution)
            if images.ndim != 4 or images.shape[1:] != expected:
                raise ClipOnnxError(f"preprocessed pixels must be float32 [N, {', '.join(map(str, expected))}], not "
                                    f"{list(images.shape)}; or pass images (paths, PIL images, uint8 arrays)")
            return images
        if isinstance(images, (str, bytes, bytearray)) or not isinstance(images, Sequence):
            images = [images]  # one image
        return preprocess.load(images, self.preprocessing)

    def tokens(self, texts: str | Sequence[str], truncate: bool = False) -> np.ndarray:
        """One text or a sequence of texts as CLIP's token ids; a single string is one text, not its characters."""
        if not isinstance(truncate, bool):
            raise ClipOnnxError(f"truncate is True or False, not {truncate!r}")
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, Iterable) and not isinstance(texts, (bytes, bytearray)):
            texts = list(texts)
        wrong = sorted({type(text).__name__ for text in texts if not isinstance(text, str)}) if isinstance(texts, list) \
            else [type(texts).__name__]
        if wrong:
            advice = "; decode bytes first" if {"bytes", "bytearray"} & set(wrong) else ""
            raise ClipOnnxError(f"texts are a str or a sequence of str, not {', '.join(wrong)}{advice}")
        return tokenizer.encode(self.tokenizer, texts, truncate)

    def encode_image(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """`CLIP.encode_image`: [N, embed_dim] float32, not normalised."""
        session = self.session("visual")  # the graph's files first: a folder without them names its graph
        pixels = self.pixels(images)
        if len(pixels) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return session.run(None, {"image": pixels})[0]

    def encode_text(self, texts: str | Sequence[str], truncate: bool = False) -> np.ndarray:
        """`CLIP.encode_text`: [N, embed_dim] float32, not normalised."""
        session = self.session("transformer")
        tokens = self.tokens(texts, truncate)
        if len(tokens) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return session.run(None, {"text": tokens})[0]

    def logits(self, images: ImageInput | Sequence[ImageInput], texts: str | Sequence[str],
               truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`CLIP.forward` from the two encoder graphs: (logits_per_image, logits_per_text)."""
        return logits(self.encode_image(images), self.encode_text(texts, truncate), self.logit_scale)

    def probabilities(self, images: ImageInput | Sequence[ImageInput], texts: str | Sequence[str],
                      truncate: bool = False) -> np.ndarray:
        """Per image, the softmax over `texts` of its logits: zero-shot classification, [N_images, N_texts]."""
        per_image, _ = self.logits(images, texts, truncate)
        if per_image.shape[1] == 0:
            raise UsageError("probabilities over no texts: give at least one label")
        return softmax(per_image)

    def forward(self, images: ImageInput | Sequence[ImageInput], texts: str | Sequence[str],
                truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`CLIP.forward` by the forward graph: (logits_per_image, logits_per_text)."""
        session = self.session("forward")
        outputs = session.run(None, {"image": self.pixels(images), "text": self.tokens(texts, truncate)})
        return outputs[0], outputs[1]
