"""Where a model's weights come from, and in which order: for OpenAI's variants the Hugging Face Hub
(`exporter.hub_weights`, pinned), then OpenAI's URL, then a `--url-base` mirror, each verified; a
release uses the pinned Hub file only. Also a local checkpoint (`exporter.checkpoints`) or seeded
random weights."""

from __future__ import annotations

import http.client
import math
import os
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from tqdm import tqdm

from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from exporter import hub_weights
from exporter.hub_weights import SourceError
from exporter.variants import OPENAI_URL_BASE, Architecture, Variant

CHUNK = 1 << 20


if TYPE_CHECKING:
    import torch


def _checkpoints():
    """`exporter.checkpoints` (torch) on first use: an offline export fails before torch is imported."""
    from exporter import checkpoints

    return checkpoints


def default_cache_dir() -> Path:
    """Where OpenAI-URL and mirror downloads are kept: shared with the `clip` package (~/.cache/clip).
    Hub files live in huggingface_hub's own cache (HF_HOME)."""
    return Path(os.environ.get("CLIP_ONNX_CACHE", Path.home() / ".cache" / "clip"))


def default_url_base() -> str | None:
    """The mirror tried after the Hub and OpenAI's URL (`--url-base`), if any."""
    return os.environ.get("CLIP_ONNX_URL_BASE")


def _warn(message: str) -> None:
    print(f"clip-onnx: warning: {message}", file=sys.stderr)


@dataclass
class Weights:
    """A loaded fp32 CLIP model and a JSON-able record of where its weights came from."""

    model: torch.nn.Module
    source: dict


def download(url: str, sha256: str, cache_dir: Path, progress: bool = True) -> Path:
    """Fetch `url` into `cache_dir` unless a file with the right SHA-256 is already there.

    Bytes go to `<file>.part` first; an interrupted download resumes from it (HTTP Range), and only
    a file whose SHA-256 matches is renamed to its final name.
    """
    target = cache_dir / url.rsplit("/", 1)[-1]
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        warnings.warn(f"{target} does not match its SHA-256; downloading it again")
        target.unlink()
    offline = hub_weights.unreachable(url)
    if offline is not None:  # before the folder is made: a failed export leaves no empty cache folder behind
        raise SourceError(f"{url}: not in {cache_dir}, and {offline}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ClipOnnxError(f"the cache folder {cache_dir} cannot be made ({error.strerror}); pass --cache-dir FOLDER "
                            f"or set CLIP_ONNX_CACHE to a folder you can write") from None
    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = response.status == 206
            if not resumed:
                start = 0
            total = start + int(response.headers.get("Content-Length", 0)) or None
            with open(partial, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"downloading {target.name}", disable=not progress,
            ) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        have = partial.stat().st_size if partial.exists() else 0
        again = "run the same command again to resume" if have else "run the same command again"
        raise SourceError(f"download of {url} failed after {have} bytes ({reason}); {again}, or point --url-base "
                          f"at a mirror") from None
    got_bytes = partial.stat().st_size
    if total is not None and got_bytes < total:
        raise SourceError(
            f"download of {url} was cut off at {got_bytes} of {total} bytes; run the same command again to resume"
        )
    actual = sha256_file(partial)
    if actual != sha256:
        partial.unlink()
        raise SourceError(
            f"SHA-256 mismatch for {url}: expected {sha256}, got {actual}; the file was deleted. "
            f"Run again, or check the mirror given by --url-base"
        )
    os.replace(partial, target)
    return target


def load_checkpoint(path: Path) -> Weights:
    path = Path(path)
    model = _checkpoints().load(path)
    return Weights(model, {"kind": "checkpoint", "path": str(path.resolve()), "sha256": sha256_file(path)})


def _checked(variant: Variant, model: torch.nn.Module, origin: str) -> torch.nn.Module:
    """A model whose inferred architecture is the variant's, or a refusal naming both."""
    found, wanted = Architecture.of(model).to_json(), variant.architecture.to_json()
    wrong = [f"{k} {v} where {variant.name} has {wanted[k]}" for k, v in found.items() if v != wanted[k]]
    if wrong:
        raise SourceError(f"{origin} is not {variant.name}: {', '.join(wrong)}")
    return model


def load_hub(variant: Variant, revision: str | None = None, cache_dir: Path | None = None,
             endpoint: str | None = None, progress: bool = True) -> Weights:
    """The variant's pinned Hub file (or `revision`'s), hashed, as a CLIP model."""
    path, source = hub_weights.fetch(variant.hub, revision, cache_dir, endpoint, progress)
    checkpoints = _checkpoints()
    state = checkpoints.read_state_dict(path)
    model = _checked(variant, checkpoints.model_from_state_dict(state, f"{variant.hub.repo}/{variant.hub.file}"),
                     f"{variant.hub.repo}/{variant.hub.file}")
    return Weights(model, source)


def load_url(variant: Variant, url_base: str, cache_dir: Path | None = None, progress: bool = True) -> Weights:
    """OpenAI's TorchScript archive from `url_base` (OpenAI's or a mirror), its SHA-256 taken from its path."""
    path = download(variant.url(url_base), variant.sha256, cache_dir or default_cache_dir(), progress)
    checkpoints = _checkpoints()
    model = _checked(variant, checkpoints.model_from_state_dict(checkpoints.read_state_dict(path), str(path)),
                     str(path))
    return Weights(model, {"kind": "openai", "url": variant.url(url_base), "sha256": variant.sha256,
                           "bytes": path.stat().st_size})


def load_variant(variant: Variant, *, release: bool = False, revision: str | None = None,
                 cache_dir: Path | None = None, url_base: str | None = None, hub_cache: Path | None = None,
                 endpoint: str | None = None, progress: bool = True,
                 warn: Callable[[str], None] = _warn) -> Weights:
    """OpenAI's weights of `variant` from the first source that gives verified bytes.

    A release (`release=True`) takes the pinned Hub file only: the Hub files are float32 while OpenAI's
    archives are float16 TorchScript, so a fallback would publish other bytes than the pin names."""
    if not variant.published:
        raise ClipOnnxError(f"{variant.name} is a test configuration with no published weights; use --weights random")
    pin = variant.hub
    if release:
        if not pin.pinned:
            raise ClipOnnxError(f"{variant.name} has no pinned Hub revision, SHA-256 and size in "
                                f"{hub_weights.PINS.name}; a maintainer runs `python -m release pin-weights` first")
        if revision is not None:
            raise ClipOnnxError("a release uses the pinned revision only; drop --revision")
    elif not pin.pinned and revision is None:
        warn(f"{variant.name}'s Hub file is not pinned in {hub_weights.PINS.name}: its revision is the Hub's "
             f"latest and its SHA-256 is recorded in the manifest but not checked against a pin")
    attempts: list[Callable[[], Weights]] = [lambda: load_hub(variant, revision, hub_cache, endpoint, progress)]
    if not release:
        attempts.append(lambda: load_url(variant, OPENAI_URL_BASE, cache_dir, progress))
        mirror = url_base or default_url_base()
        if mirror:
            attempts.append(lambda: load_url(variant, mirror, cache_dir, progress))
    failures = []
    for attempt in attempts:
        try:
            return attempt()
        except SourceError as error:
            failures.append(str(error))
    # one line per source, then what to do
    advice = "" if release else ("\n  without them: --weights random (a pipeline demo), --checkpoint FILE (weights "
                                 "you have), or --url-base MIRROR")
    raise ClipOnnxError(f"no source gave {variant.name}'s weights:\n" + "\n".join(f"  - {f}" for f in failures)
                        + advice)


def random_weights(variant: Variant, seed: int = 0) -> Weights:
    """The real architecture with CLIP's initialisation, then perturbed so outputs discriminate.

    CLIP zero-initialises every ResNet `bn3.weight` and leaves norms at identity, which makes two
    different images give nearly the same embedding; a parity test on such a model proves little.
    Every norm's affine parameters and running statistics and `logit_scale` are therefore drawn at
    random (seeded), and convolutions get He initialisation (PyTorch's default shrinks the signal at
    every layer until the biases dominate), so different inputs give clearly different outputs.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = variant.architecture.build()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):  # keep the signal's scale through deep ResNets
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
            for name, parameter in model.named_parameters():
                if name.endswith("bn3.weight") and name.startswith("visual.layer"):
                    parameter.uniform_(0.1, 0.3)  # CLIP's residual branches start at zero
            model.logit_scale.fill_(math.log(1 / 0.07) * torch.empty(()).uniform_(0.8, 1.2).item())
    return Weights(model.eval(), {"kind": "random", "seed": seed, "variant": variant.name})
