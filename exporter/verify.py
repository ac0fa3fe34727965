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
    except RuntimeError:
        long = next(t for t in texts if _too_long(t, context_length))
        shown = long if len(long) <= 60 else long[:60] + "..."
        raise ClipOnnxError(f"--text {shown!r} is longer than {context_length} tokens; shorten it or pass --truncate "
                            f"to cut it") from None


def _too_long(text: str, context_length: int) -> bool:
    try:
        clip.tokenize([text], context_length=context_length)
    except RuntimeError:
        return True
    return False


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
    """What one graph's outputs on one input set measure against PyTorch's. It holds no verdict:
    `Report.misses` is the one place that judges it."""

    graph: str
    input_set: str
    max_abs_diff: float
    max_relative_diff: float
    min_cosine: float
    argmax_agrees: bool
    argmax_agreement: float
    # The input-dependent part: each row minus the batch's mean row (embeddings of 2+ rows only), its
    # largest magnitude relative to the output scale, and the lowest cosine between its rows.
    centered_scale: float | None = None
    centered_min_cosine: float | None = None

    def input_dependence(self, tolerance: Tolerance) -> str | None:
        """Whether the input-dependent part matches: "passed", "failed", "too small" to judge (at or below
        the tolerance itself), or None where it does not apply (logits, single rows)."""
        if self.centered_scale is None:  # `compare` sets both or neither
            return None
        if self.centered_scale <= tolerance.max_relative:
            return "too small"
        return "passed" if self.centered_min_cosine >= tolerance.min_cosine else "failed"


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
            partner: np.ndarray | None, scale: float) -> Comparison:
    """Measure `actual` against `expected` (no verdict: see `Report`)."""
    abs_diff = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    cosine = min(row_cosine(a, e) for a, e in zip(actual, expected))
    agreement = float(np.mean(zero_shot(actual, graph, partner) == zero_shot(expected, graph, partner)))
    centered_scale = centered_cosine = None
    if GRAPHS[graph].output_kind == "embeddings" and len(expected[0]) > 1:
        a64, e64 = actual[0].astype(np.float64), expected[0].astype(np.float64)
        a_centered, e_centered = a64 - a64.mean(axis=0), e64 - e64.mean(axis=0)  # NxD minus the mean row (1xD)
        centered_scale = float(np.abs(e_centered).max()) / scale
        centered_cosine = row_cosine(a_centered, e_centered)
    return Comparison(graph, input_set, abs_diff, abs_diff / scale, cosine, agreement == 1.0, agreement,
                      centered_scale, centered_cosine)


def max_pairwise_cosine(embeddings: np.ndarray) -> float:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1.0)
    return float(similarity.max())


# The input set whose reference embeddings make a graph's zero-shot choices (see `partner`).
PARTNER_INPUTS = {"visual": "captions", "transformer": "photos"}


@dataclass
class Report:
    """The verdict on a set of graphs: "passed", "failed" or "inconclusive".

    Different photos (and captions) must give clearly different reference embeddings, or a parity pass
    would prove little. With `strict` (OpenAI's weights, random weights, release runs) that is
    required. A checkpoint a user brings may be nearly collapsed; then every embedding graph is also
    judged on its input-dependent part (rows minus the batch mean), and where that part is too small
    to judge on every input set of a graph, the verdict is "inconclusive", never "passed"."""

    precision: str
    tolerance: Tolerance
    discrimination: dict[str, float]
    comparisons: list[Comparison]
    strict: bool = True

    @property
    def inputs_alike(self) -> list[str]:
        return [key for key, value in self.discrimination.items() if value >= MAX_INPUT_COSINE]

    def misses(self, comparison: Comparison) -> dict[str, str]:
        """The one pass rule: each criterion a comparison misses ("cosine", "relative", "agreement"), with
        its value and limit; none means it passed. `status`, the manifest's record and the exit code all
        derive from it. The cosine applies to embeddings only (see Tolerance). A checkpoint's zero-shot
        choices against near-identical partner embeddings are ties, not decisions, so agreement does not
        count there."""
        tolerance, misses = self.tolerance, {}
        if GRAPHS[comparison.graph].output_kind != "logits" and comparison.min_cosine < tolerance.min_cosine:
            misses["cosine"] = f"cosine {comparison.min_cosine:.7f} < {tolerance.min_cosine}"
        if comparison.max_relative_diff > tolerance.max_relative:
            misses["relative"] = (f"max relative difference {comparison.max_relative_diff:.2e} > "
                                  f"{tolerance.max_relative}")
        partner_alike = PARTNER_INPUTS.get(comparison.graph) in self.inputs_alike
        if comparison.argmax_agreement < tolerance.min_agreement and (self.strict or not partner_alike):
            misses["agreement"] = (f"zero-shot agreement {comparison.argmax_agreement:.0%} < "
                                   f"{tolerance.min_agreement:.0%}")
        return misses

    @property
    def status(self) -> str:
        if not self.comparisons or any(self.misses(c) for c in self.comparisons):
            return "failed"
        if not self.inputs_alike:
            return "passed"
        if self.strict:
            return "failed"
        verdicts: dict[str, set[str]] = {}
        for c in self.comparisons:
            verdict = c.input_dependence(self.tolerance)
            if verdict is not None:
                verdicts.setdefault(c.graph, set()).add(verdict)
        if any("failed" in v for v in verdicts.values()):
            return "failed"
        return "passed" if all("passed" in v for v in verdicts.values()) else "inconclusive"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def problem(self) -> str:
        """What failed, or why the verdict is inconclusive, naming the criterion: one sentence."""
        for c in self.comparisons:
            if misses := self.misses(c):
                return (f"onnxruntime disagrees with PyTorch beyond the {self.precision} tolerance: {c.graph} on "
                        f"{c.input_set}: {', '.join(misses.values())}")
        alike = ", ".join(f"different {key} give embeddings with cosine {self.discrimination[key]:.5f} >= "
                          f"{MAX_INPUT_COSINE}" for key in self.inputs_alike)
        if self.strict:
            return (f"the distinct-input criterion failed: {alike}; the model's outputs barely depend on its input, "
                    f"so a parity pass would prove little (required for OpenAI's and random weights)")
        wrong = next((c for c in self.comparisons if c.input_dependence(self.tolerance) == "failed"), None)
        if wrong is not None:
            return (f"onnxruntime disagrees with PyTorch on the input-dependent part of {wrong.graph} on "
                    f"{wrong.input_set}: its cosine {wrong.centered_min_cosine:.7f} < {self.tolerance.min_cosine}")
        return (f"inconclusive: {alike}, and the part of the outputs that depends on the input is within the "
                f"{self.precision} tolerance itself, so the graphs match PyTorch but the check cannot tell a "
                f"right graph from a wrong one; check the checkpoint (a collapsed model gives this), or verify "
                f"with your own inputs: clip-onnx verify FOLDER --text CAPTION")

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "status": self.status,
            "precision": self.precision,
            "tolerance": asdict(self.tolerance),
            "reference": "PyTorch float32 (clip.model.CLIP)",
            "distinct_inputs_required": self.strict,
            "discrimination_max_cosine": {**self.discrimination, "limit": MAX_INPUT_COSINE},
            # each comparison's measurements and the criteria it misses, as `misses` judged them
            "comparisons": [{**asdict(c), "misses": sorted(self.misses(c))} for c in self.comparisons],
        }

    def table(self) -> str:
        lines = [f"{'graph':<12} {'inputs':<14} {'max abs':>10} {'max rel':>10} {'min cosine':>12} argmax  "
                 f"{'centred cos':>12}  result"]
        for c in self.comparisons:
            centred = f"{c.centered_min_cosine:>12.9f}" if c.centered_min_cosine is not None else f"{'-':>12}"
            lines.append(f"{c.graph:<12} {c.input_set:<14} {c.max_abs_diff:>10.2e} {c.max_relative_diff:>10.2e} "
                         f"{c.min_cosine:>12.9f} {'same' if c.argmax_agrees else f'{c.argmax_agreement:.0%}':<7} "
                         f"{centred}  {'FAIL' if self.misses(c) else 'ok'}")
        for key, value in self.discrimination.items():
            if value < MAX_INPUT_COSINE:
                verdict = "ok"
            else:
                verdict = (f"FAIL (limit {MAX_INPUT_COSINE})" if self.strict
                           else "alike: judged on the input-dependent part (centred cos)")
            lines.append(f"distinct inputs: max cosine between different {key}: {value:.5f} {verdict}")
        lines.append(f"verdict: {self.status}")
        return "\n".join(lines)


def session(path: Path, device: str = "cpu") -> ort.InferenceSession:
    """An onnxruntime session as verification opens it: every graph optimisation but the CPU layout
    transformation (NCHWc), and no CPU memory arena: for fp16 graphs on the CPU the layout pass keeps
    float32 copies of every convolution weight, and the arena keeps a deleted session's memory, which
    the next graph's verification would add to (docs/measurements.md). Consumers' default (all
    optimisations, arena on) is exercised by the runtime's tests."""
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
          log=print, strict: bool = True) -> Report:
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
            comparisons.append(compare(graph, inputs.name, actual, wanted, partner(references, graph, inputs.name),
                                       scale))
        del graph_session
        memory.trim()
    return Report(precision, tolerance, references.discrimination, comparisons, strict)
