"""Where a model's weights come from: OpenAI's URLs (cached, SHA-256 checked, resumable), a local
checkpoint (TorchScript archive or plain state dict), or seeded random weights."""

from __future__ import annotations

import http.client
import math
import os
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from exporter._clip import clip_model
from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from exporter.variants import OPENAI_URL_BASE, Variant

CHUNK = 1 << 20
# Keys every CLIP state dict has; their absence means "not a CLIP checkpoint".
CLIP_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight", "logit_scale")


def default_cache_dir() -> Path:
    """Shared with the `clip` package (~/.cache/clip), so weights it downloaded are reused."""
    return Path(os.environ.get("CLIP_ONNX_CACHE", Path.home() / ".cache" / "clip"))


def default_url_base() -> str:
    return os.environ.get("CLIP_ONNX_URL_BASE", OPENAI_URL_BASE)


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
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / url.rsplit("/", 1)[-1]
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        warnings.warn(f"{target} does not match its SHA-256; downloading it again")
        target.unlink()
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
        raise ClipOnnxError(
            f"download of {url} failed after {have} bytes ({reason}); run the same command again to resume, "
            f"or point --url-base at a mirror"
        ) from None
    got_bytes = partial.stat().st_size
    if total is not None and got_bytes < total:
        raise ClipOnnxError(
            f"download of {url} was cut off at {got_bytes} of {total} bytes; run the same command again to resume"
        )
    actual = sha256_file(partial)
    if actual != sha256:
        partial.unlink()
        raise ClipOnnxError(
            f"SHA-256 mismatch for {url}: expected {sha256}, got {actual}; the file was deleted. "
            f"Run again, or check the mirror given by --url-base"
        )
    os.replace(partial, target)
    return target


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a TorchScript archive (what OpenAI ships) or of a plain `torch.save`d state dict.

    Neither path unpickles arbitrary Python objects: TorchScript archives are read by TorchScript's
    own loader, state dicts with `weights_only=True`.
    """
    if not path.is_file():
        raise ClipOnnxError(f"checkpoint {path} does not exist or is not a file")
    try:
        is_torchscript = zipfile.is_zipfile(path) and any(
            name.endswith("/constants.pkl") for name in zipfile.ZipFile(path).namelist()
        )
        if is_torchscript:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load is deprecated, yet it is OpenAI's format
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ClipOnnxError(
            f"cannot read checkpoint {path}: {first_line[:200]}; the file is truncated, corrupt or not a "
            f"PyTorch file. Download or save it again"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training checkpoints often wrap the weights
    if not isinstance(state, dict):
        raise ClipOnnxError(f"checkpoint {path} holds a {type(state).__name__}, not a CLIP state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def model_from_state_dict(state: dict[str, torch.Tensor], origin: str) -> torch.nn.Module:
    """Build CLIP with the architecture inferred from the weights, as `clip.model.build_model` does."""
    missing = [k for k in CLIP_KEYS if k not in state]
    if "visual.proj" not in state and "visual.attnpool.positional_embedding" not in state:
        missing.append("visual.proj or visual.attnpool.*")
    if missing:
        raise ClipOnnxError(f"{origin} is not a CLIP checkpoint: it lacks {', '.join(missing)}")
    tensors = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        model = clip_model.build_model(dict(state)).float()
        # build_model rounds Conv/Linear weights through fp16; reload them so fp32 checkpoints stay exact
        model.load_state_dict(tensors)
    except (KeyError, RuntimeError, AssertionError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ClipOnnxError(f"{origin} does not fit any CLIP architecture: {reason}") from None
    return model.eval()


def load_checkpoint(path: Path) -> Weights:
    path = Path(path)
    model = model_from_state_dict(_read_state_dict(path), str(path))
    return Weights(model, {"kind": "checkpoint", "path": str(path.resolve()), "sha256": sha256_file(path)})


def load_openai(variant: Variant, cache_dir: Path | None = None, url_base: str | None = None,
                progress: bool = True) -> Weights:
    url = variant.url(url_base or default_url_base())
    path = download(url, variant.sha256, cache_dir or default_cache_dir(), progress)
    model = model_from_state_dict(_read_state_dict(path), str(path))
    return Weights(model, {"kind": "openai", "url": variant.url(), "sha256": variant.sha256})


def random_weights(variant: Variant, seed: int = 0) -> Weights:
    """The real architecture with CLIP's initialisation, then perturbed so outputs discriminate.

    CLIP zero-initialises every ResNet `bn3.weight` and leaves norms at identity, which makes two
    different images give nearly the same embedding; a parity test on such a model proves little.
    Every norm's affine parameters and running statistics and `logit_scale` are therefore drawn at
    random (seeded), and convolutions get He initialisation (PyTorch's default shrinks the signal at
    every layer until the biases dominate), so different inputs give clearly different outputs.
    """
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
