"""The one tolerance table: how close an exported graph must come to the float32 PyTorch model.

Free of torch, so the ONNX-only runtime, the command line and the tests hold graphs to the same
numbers the exporter's verification does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria of one precision: the lowest cosine similarity of any embedding row to PyTorch's
    and the largest max-abs difference relative to the output's scale; and the share of rows whose
    zero-shot decision (argmax) equals PyTorch's. The scale of an embedding is its largest reference magnitude; that of logits is
    exp(logit_scale), their bound, since near-zero logits make element-wise ratios meaningless.

    The cosine applies to embeddings, not to rows of logits: logits are exp(logit_scale) * cos(image, text),
    so a row's cosine measures the error of each cos(image, text) relative to its own size, which for
    near-orthogonal embeddings (random weights: |cos| about 1/sqrt(embed_dim)) magnifies the towers'
    error several times more than trained weights (|cos| 0.2-0.3) do. Logits are held to the
    bound-relative error instead, tighter than what the embedding cosine allows them
    (2 * sqrt(2 * (1 - min_cosine)))."""

    min_cosine: float
    max_relative: float
    min_agreement: float = 1.0


# The one tolerance table. fp16 and int8 are compared with the float32 PyTorch model; fp32 and fp16
# decisions must all agree.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.99999, max_relative=1e-4),
    "fp16": Tolerance(min_cosine=0.999, max_relative=3e-2),
    # int8 flips decisions where PyTorch's own margin is below its error: with random weights the
    # embeddings are near-orthogonal and such near-ties are common (docs/measurements.md, "int8 accuracy").
    "int8": Tolerance(min_cosine=0.995, max_relative=1e-1, min_agreement=0.75),
}
# Different photos (and different captions) must have reference embeddings less alike than this,
# or a parity pass would say nothing: differences between inputs must dwarf the tolerance.
MAX_INPUT_COSINE = 0.999
