"""Reading CLIP weights from a file: a TorchScript archive (OpenAI's format), a `torch.save`d state
dict, or safetensors (open_clip's layout or a plain CLIP state dict), and building `clip.model.CLIP`
from them, its architecture inferred by `clip.model.build_model`'s rules. No path unpickles arbitrary objects.

CLIP's `build_model` infers the architecture from the tensors' shapes and assumes QuickGELU, a head
width of 64, no layer scale and no attention pooling. Verification cannot catch a model built the
wrong way (the PyTorch reference would be built the same way), so an `open_clip_config.json` beside a
checkpoint is read and anything CLIP's modules do not compute exactly is refused."""

from __future__ import annotations

import json
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from clip_onnx.errors import ClipOnnxError
from exporter.variants import Architecture

OPEN_CLIP_CONFIG = "open_clip_config.json"
# Keys every CLIP state dict has; their absence means "not a CLIP checkpoint".
CLIP_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight", "logit_scale")
# Metadata OpenAI's TorchScript archives carry beside the tensors; build_model drops them.
ARCHIVE_METADATA = ("input_resolution", "context_length", "vocab_size")
# State-dict keys of open_clip options that CLIP's modules do not compute (layer scale, attention pooling,
# a logit bias): refused by name rather than by a strict load's list of unexpected keys.
FOREIGN_KEYS = {".ls_1.gamma": "layer scale", ".ls_2.gamma": "layer scale", "visual.attn_pool.": "attention pooling",
                "logit_bias": "a logit bias"}
# open_clip_config.json: keys CLIP's modules take any value of, and keys that must keep open_clip's
# default for CLIP's modules to compute the same function. Any other key is refused.
FREE = {"model_cfg": {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text"},
        "vision_cfg": {"image_size", "layers", "width", "patch_size"},
        "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers"}}
DEFAULTS = {
    "model_cfg": {"custom_text": False},
    "vision_cfg": {"head_width": 64, "mlp_ratio": 4.0, "ls_init_value": None, "patch_dropout": 0.0,
                   "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
                   "final_ln_after_pool": False, "pool_type": "tok", "output_tokens": False, "act_kwargs": None,
                   "norm_kwargs": None, "timm_model_name": None},
    "text_cfg": {"mlp_ratio": 4.0, "ls_init_value": None, "embed_cls": False, "pad_id": 0, "no_causal_mask": False,
                 "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False, "proj_type": "linear",
                 "output_tokens": False, "act_kwargs": None, "norm_kwargs": None, "hf_model_name": None},
}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ClipOnnxError(f"cannot read {path}: {_first_line(error)}; it is truncated or not a safetensors file. "
                            f"Download or save it again") from None


# Pickle instructions that import or call Python objects: what a code-running pickle is made of.
CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _pickle_calls_code(path: Path) -> bool:
    """Whether `path` is a bare pickle (not torch.save's zip) that imports or calls objects; read, never run."""
    try:
        with open(path, "rb") as f:
            return any(op.name in CODE_OPCODES for op, _, _ in pickletools.genops(f))
    except Exception:  # not a pickle: truncated or another format
        return False


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, by its format: safetensors by its suffix, else TorchScript or
    `torch.save` (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise ClipOnnxError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        is_torchscript = zipfile.is_zipfile(path) and any(
            name.endswith("/constants.pkl") for name in zipfile.ZipFile(path).namelist())
        if is_torchscript:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load is deprecated, yet it is OpenAI's format
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file; its texts advise unsafe loading
        if "Unsupported global" in str(error) or _pickle_calls_code(path):
            raise ClipOnnxError(
                f"checkpoint {path} holds Python objects besides tensors, which clip-onnx does not unpickle (loading "
                f"them could run code); save the weights alone with torch.save(model.state_dict()) or as "
                f".safetensors") from None
        raise ClipOnnxError(f"cannot read checkpoint {path} ({type(error).__name__}): the file is truncated, corrupt "
                            f"or not a PyTorch file; download or save it again") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training checkpoints often wrap the weights
    if not isinstance(state, dict):
        raise ClipOnnxError(f"checkpoint {path} holds a {type(state).__name__}, not a CLIP state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_open_clip_config(path: Path) -> None:
    """Refuse an open_clip config whose model CLIP's modules would not compute exactly."""
    try:
        config = json.loads(Path(path).read_text())
        model_cfg = config.get("model_cfg", config)
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise ClipOnnxError(f"cannot read {path}: {_first_line(error)}; fix or remove it") from None
    sections = {"model_cfg": model_cfg, "vision_cfg": model_cfg.get("vision_cfg", {}),
                "text_cfg": model_cfg.get("text_cfg", {})}
    for section, values in sections.items():
        for key, value in values.items():
            if key in FREE[section] or (key in DEFAULTS[section] and value == DEFAULTS[section][key]):
                continue
            what = f"{key} = {json.dumps(value)}" if key in DEFAULTS[section] else f"{key} (not a key CLIP has)"
            raise ClipOnnxError(f"{path}: {section}.{what}, which CLIP's modules do not compute; clip-onnx exports "
                                f"only models that clip.model.CLIP computes exactly")
    if model_cfg.get("quick_gelu") is not True:
        raise ClipOnnxError(f"{path}: quick_gelu is {json.dumps(model_cfg.get('quick_gelu', False))} (open_clip's "
                            f"default is false), but CLIP's modules compute QuickGELU; only quick_gelu true exports")
    text = sections["text_cfg"]
    if "heads" in text and text["heads"] * 64 != text.get("width", 512):
        raise ClipOnnxError(f"{path}: text_cfg.heads = {text['heads']} gives a head width of "
                            f"{text.get('width', 512) / text['heads']:g}, but CLIP's modules use 64")


def model_from_state_dict(state: dict[str, torch.Tensor], origin: str) -> torch.nn.Module:
    """Build CLIP with the architecture inferred from the weights, as `clip.model.build_model` does."""
    missing = [k for k in CLIP_KEYS if k not in state]
    if "visual.proj" not in state and "visual.attnpool.positional_embedding" not in state:
        missing.append("visual.proj or visual.attnpool.*")
    if missing:
        raise ClipOnnxError(f"{origin} is not a CLIP checkpoint: it lacks {', '.join(missing)}")
    foreign = next(((key, what) for key in state for pattern, what in FOREIGN_KEYS.items() if pattern in key), None)
    if foreign:
        raise ClipOnnxError(f"{origin} has {foreign[0]} ({foreign[1]}), which CLIP's modules do not compute; "
                            f"clip-onnx exports only models that clip.model.CLIP computes exactly")
    wrong_dtype = next((k for k, v in state.items() if k not in ARCHIVE_METADATA and not v.is_floating_point()
                        and not k.endswith("num_batches_tracked")), None)
    if wrong_dtype:
        raise ClipOnnxError(f"{origin}: {wrong_dtype} is {state[wrong_dtype].dtype}, not a floating-point weight")
    tensors = {k: v for k, v in state.items() if k not in ARCHIVE_METADATA}
    try:
        model = infer_architecture(tensors).build()
    except (KeyError, AssertionError, ValueError, IndexError) as error:
        raise ClipOnnxError(f"{origin} does not fit any CLIP architecture: {_first_line(error)}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"{k} is not a CLIP weight" for k in tensors if k not in expected]
    problems += [f"{k} is missing" for k in expected if k not in tensors]
    problems += [f"{k} has shape ({', '.join(map(str, v.shape))}) where the architecture the other weights give "
                 f"needs ({', '.join(map(str, expected[k]))})" for k, v in tensors.items()
                 if k in expected and tuple(v.shape) != expected[k]]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ClipOnnxError(f"{origin} does not fit CLIP's architecture: {problems[0]}{more}")
    model.load_state_dict(tensors)  # float16 checkpoints are cast into the float32 model
    return model.eval()


def infer_architecture(state: dict[str, torch.Tensor]) -> Architecture:
    """The architecture `clip.model.build_model` infers from a state dict's shapes, by the same rules
    (heads = width // 64 is one of them: see `check_open_clip_config`)."""
    if "visual.proj" in state:
        width = state["visual.conv1.weight"].shape[0]
        layers: int | tuple[int, ...] = len(
            [k for k in state if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        patch: int | None = state["visual.conv1.weight"].shape[-1]
        resolution = patch * round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    else:
        layers = tuple(len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}")}) for b in (1, 2, 3, 4))
        width = state["visual.layer1.0.conv1.weight"].shape[0]
        tokens = state["visual.attnpool.positional_embedding"].shape[0]
        grid = round((tokens - 1) ** 0.5)
        if grid**2 + 1 != tokens:
            raise ValueError(f"visual.attnpool.positional_embedding has {tokens} rows, not a square grid plus one")
        patch, resolution = None, grid * 32
    text_width = state["ln_final.weight"].shape[0]
    return Architecture(
        embed_dim=state["text_projection"].shape[1], image_resolution=resolution, vision_layers=layers,
        vision_width=width, vision_patch_size=patch, context_length=state["positional_embedding"].shape[0],
        vocab_size=state["token_embedding.weight"].shape[0], transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks")}))


def load(path: Path) -> torch.nn.Module:
    """A CLIP model from a checkpoint file, its `open_clip_config.json` checked when one lies beside it."""
    path = Path(path)
    state = read_state_dict(path)
    config = path.with_name(OPEN_CLIP_CONFIG)
    if config.is_file():
        check_open_clip_config(config)
    return model_from_state_dict(state, str(path))
