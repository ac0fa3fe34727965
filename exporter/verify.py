"""Where a graph is checked: PyTorch and ONNX Runtime run on the same images and texts.

The reference is always the float32 PyTorch model, so fp16 graphs are measured against the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from exporter import memory
from exporter._clip import clip
from clip_onnx.contract import GRAPHS
from clip_onnx.errors import ClipOnnxError
from exporter.export import TEXT_DTYPE
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES, Tolerance

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
CAPTIONS = (
    "a photo of an astronaut",
    "a photo of a cat",
    "a cup of coffee",
    "a rocket on a launch pad",
    "a black and white photo of a man with a camera",
    "café crème, naïve façade — 東京の夜景 🚀🐱",
    "!!! ??? ... (punctuation) [brackets] {braces} #hash @at",
    "",
)
LONG_CAPTION = " ".join(["a very long caption that keeps going"] * 20)


@dataclass
class InputSet:
    """Named inputs; `image` or `text` may be None where a set feeds only one tower."""

    name: str
    image: torch.Tensor | None
    text: torch.Tensor | None


def tokenize(texts: list[str], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """`clip.tokenize`, turning its over-length error into an actionable one."""
    try:
        return clip.tokenize(texts, context_length=context_length, truncate=truncate).to(TEXT_DTYPE)
    except RuntimeError as error:
        raise ClipOnnxError(f"{error}; shorten the text or pass --truncate to cut it at {context_length} tokens") from None


def photos(resolution: int) -> torch.Tensor:
    """Public-domain photographs shipped with scikit-image, through CLIP's own preprocessing."""
    import skimage.data

    preprocess = clip.clip._transform(resolution)
    return torch.stack([preprocess(Image.fromarray(getattr(skimage.data, n)())) for n in PHOTOS])


def synthetic_images(resolution: int, seed: int = 0) -> torch.Tensor:
    """Already-normalised tensors: noise, a gradient, a checkerboard, a constant."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-2, 2, resolution)
    checker = ((torch.arange(resolution)[:, None] // 8 + torch.arange(resolution)[None, :] // 8) % 2) * 4.0 - 2.0
    return torch.stack([
        torch.randn(3, resolution, resolution, generator=generator),
        ramp.expand(3, resolution, resolution).clone(),
        checker.expand(3, resolution, resolution).clone(),
        torch.full((3, resolution, resolution), 0.5),
    ])


def token_layouts(vocab_size: int, context_length: int, seed: int = 0) -> torch.Tensor:
    """One row per sequence length 1..context_length: start token, random ids, end token, then zero
    padding, so the end token sits at every position. The end token is the largest id, as in CLIP."""
    generator = torch.Generator().manual_seed(seed)
    start, end = vocab_size - 2, vocab_size - 1
    rows = torch.zeros(context_length, context_length, dtype=TEXT_DTYPE)
    for length in range(1, context_length + 1):
        rows[length - 1, :length] = torch.randint(1, start, (length,), generator=generator, dtype=TEXT_DTYPE)
        rows[length - 1, 0] = start if length > 1 else end
        rows[length - 1, length - 1] = end
    return rows


def input_sets(resolution: int, vocab_size: int, context_length: int, extra_texts: list[str] | None = None,
               truncate: bool = False) -> list[InputSet]:
    """Every input set a graph is verified on. Batch sizes (1, 4, 5, 9, 77) differ from the export's."""
    real = photos(resolution)
    captions = tokenize([*CAPTIONS, LONG_CAPTION], context_length, truncate=True)
    sets = [
        InputSet("single", real[:1], captions[:1]),
        InputSet("photos", real, captions),
        InputSet("synthetic", synthetic_images(resolution), captions[1:5]),
        InputSet("token-layouts", None, token_layouts(vocab_size, context_length)),
    ]
    if extra_texts:
        sets.append(InputSet("user-texts", real[:1], tokenize(extra_texts, context_length, truncate)))
    return sets


@torch.no_grad()
def reference(model: torch.nn.Module, graph: str, inputs: InputSet) -> list[np.ndarray] | None:
    """PyTorch's outputs of `graph` on `inputs` with the CLIP method the graph equals, or None if the
    set does not feed the graph."""
    spec = GRAPHS[graph]
    device = next(model.parameters()).device
    feeds = {"image": inputs.image, "text": inputs.text}
    if any(feeds[name] is None for name in spec.inputs):
        return None
    outputs = getattr(model, spec.clip_method)(*(feeds[name].to(device) for name in spec.inputs))
    return [o.float().cpu().numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]


@dataclass
class Comparison:
    graph: str
    input_set: str
    max_abs_diff: float
    max_relative_diff: float
    min_cosine: float
    argmax_agrees: bool
    argmax_agreement: float
    passed: bool


def row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest cosine similarity between matching rows; a zero row matches only a zero row."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
    den = norm_a * norm_b
    degenerate = np.where((norm_a == 0) & (norm_b == 0), 1.0, 0.0)
    return float(np.min(np.where(den > 0, (a64 * b64).sum(axis=1) / np.where(den > 0, den, 1), degenerate)))


def zero_shot(outputs: list[np.ndarray], graph: str, partner: np.ndarray | None) -> np.ndarray:
    """The decision a user would make from these outputs, per row: the best caption for an image
    (or image for a caption) by similarity with the partner tower's embeddings; for forward, the
    largest logit."""
    if GRAPHS[graph].output_kind == "logits":
        return outputs[0].argmax(axis=1)
    return (outputs[0] @ partner.T).argmax(axis=1)


def output_scale(graph: str, expected: list[np.ndarray], logit_scale: float) -> float:
    """What `Tolerance.max_relative` is relative to."""
    return logit_scale if GRAPHS[graph].output_kind == "logits" else max(float(np.abs(e).max()) for e in expected) or 1.0


def compare(graph: str, input_set: str, actual: list[np.ndarray], expected: list[np.ndarray],
            tolerance: Tolerance, partner: np.ndarray | None, scale: float) -> Comparison:
    abs_diff = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    cosine = min(row_cosine(a, e) for a, e in zip(actual, expected))
    agreement = float(np.mean(zero_shot(actual, graph, partner) == zero_shot(expected, graph, partner)))
    cosine_ok = GRAPHS[graph].output_kind == "logits" or cosine >= tolerance.min_cosine  # see Tolerance
    passed = cosine_ok and abs_diff / scale <= tolerance.max_relative and agreement >= tolerance.min_agreement
    return Comparison(graph, input_set, abs_diff, abs_diff / scale, cosine, agreement == 1.0, agreement, passed)


def max_pairwise_cosine(embeddings: np.ndarray) -> float:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1.0)
    return float(similarity.max())


@dataclass
class Report:
    precision: str
    tolerance: Tolerance
    discrimination: dict[str, float]
    comparisons: list[Comparison]

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed for c in self.comparisons) and all(
            v < MAX_INPUT_COSINE for v in self.discrimination.values())

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "tolerance": asdict(self.tolerance),
            "reference": "PyTorch float32 (clip.model.CLIP)",
            "discrimination_max_cosine": {**self.discrimination, "limit": MAX_INPUT_COSINE},
            "comparisons": [asdict(c) for c in self.comparisons],
        }

    def table(self) -> str:
        lines = [f"{'graph':<12} {'inputs':<14} {'max abs':>10} {'max rel':>10} {'min cosine':>12} argmax  result"]
        for c in self.comparisons:
            lines.append(f"{c.graph:<12} {c.input_set:<14} {c.max_abs_diff:>10.2e} {c.max_relative_diff:>10.2e} "
                         f"{c.min_cosine:>12.9f} {'same' if c.argmax_agrees else f'{c.argmax_agreement:.0%}':<7} "
                         f"{'ok' if c.passed else 'FAIL'}")
        for key, value in self.discrimination.items():
            verdict = "ok" if value < MAX_INPUT_COSINE else f"FAIL (limit {MAX_INPUT_COSINE})"
            lines.append(f"distinct inputs: max cosine between different {key}: {value:.5f} {verdict}")
        return "\n".join(lines)


def session(path: Path, device: str = "cpu") -> ort.InferenceSession:
    """An onnxruntime session as verification opens it: every graph optimisation but the CPU layout
    transformation (NCHWc), and no CPU memory arena. For fp16 graphs on the CPU the layout pass keeps
    float32 copies of every convolution weight: RN50x64's fp16 forward graph peaked at 4.47 GB with it
    and 2.18 GB without (session created and run once, in a process of its own). The arena kept a
    session's memory after the session was deleted, once it had run the verification's batches:
    verifying ViT-L/14@336px fp16 held 3.2 GB of the forward graph's session while the visual one ran
    (peak 7.68 GB with the arena, 6.28 GB without). Consumers' default (all optimisations, arena on)
    is exercised by the runtime's tests."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=providers(device))


def providers(device: str) -> list[str]:
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ClipOnnxError("--device cuda: this onnxruntime has no CUDA provider; pip install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass
class References:
    """PyTorch float32 outputs for every (graph, input set), computed before any conversion, so
    the model can then be halved for export and still be the reference."""

    sets: list[InputSet]
    outputs: dict[tuple[str, str], list[np.ndarray]]
    discrimination: dict[str, float]
    logit_scale: float  # exp(model.logit_scale): the bound of the logits

    @classmethod
    def compute(cls, model: torch.nn.Module, graphs: list[str], extra_texts: list[str] | None = None,
                truncate: bool = False) -> References:
        sets = input_sets(model.visual.input_resolution, model.vocab_size, model.context_length, extra_texts, truncate)
        outputs = {}
        for graph in {*graphs, "visual", "transformer"}:  # both towers serve as zero-shot partners
            for inputs in sets:
                result = reference(model, graph, inputs)
                if result is not None:
                    outputs[graph, inputs.name] = result
        discrimination = {"photos": max_pairwise_cosine(outputs["visual", "photos"][0]),
                          "captions": max_pairwise_cosine(outputs["transformer", "photos"][0])}
        return cls(sets, outputs, discrimination, float(model.logit_scale.detach().float().exp()))


PARTNERS = {"visual": "transformer", "transformer": "visual"}


def partner(references: References, graph: str, set_name: str) -> np.ndarray | None:
    """The other tower's reference embeddings to make zero-shot decisions with: on the same input set,
    or on the photos for a set that feeds only one tower (the token layouts)."""
    if graph not in PARTNERS:
        return None
    outputs = references.outputs.get((PARTNERS[graph], set_name)) or references.outputs[PARTNERS[graph], "photos"]
    return outputs[0]


def check(references: References, graph_paths: dict[str, Path], precision: str, device: str = "cpu",
          log=print) -> Report:
    """Run every graph in `graph_paths` on every input set and compare with the references.

    Sessions are opened one at a time and released before the next, to bound memory.
    """
    tolerance = TOLERANCES[precision]
    comparisons = []
    for graph, path in graph_paths.items():
        log(f"verifying {path.name} with onnxruntime {ort.__version__} on {device}")
        graph_session = session(path, device)
        for inputs in references.sets:
            wanted = references.outputs.get((graph, inputs.name))
            if wanted is None:
                continue
            feeds = {"image": inputs.image, "text": inputs.text}
            actual = graph_session.run(None, {n: feeds[n].numpy() for n in GRAPHS[graph].inputs})
            scale = output_scale(graph, wanted, references.logit_scale)
            comparisons.append(compare(graph, inputs.name, actual, wanted, tolerance,
                                       partner(references, graph, inputs.name), scale))
        del graph_session
        memory.trim()
    return Report(precision, tolerance, references.discrimination, comparisons)
