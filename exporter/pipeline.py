"""One export run end to end: references, graphs, verification, manifest, then the move into place.

Everything is written into a hidden staging folder beside the destination and renamed to
`<out>/<name>/` only after verification passed, so no final name ever holds a partial or
unverified file; on any failure or Ctrl-C the staging folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from clip_onnx import integrity, preprocess
from clip_onnx import manifest as consumer_manifest
from clip_onnx.contract import DEFAULT_OPSET, GRAPHS, PRECISIONS, export_folder
from clip_onnx.errors import ClipOnnxError
from exporter.errors import InconclusiveError, VerificationError
from exporter import manifest, memory, quantize, shared_weights, tokenizer
from exporter.export import export_graph, fold_batch_norms, to_precision, weight_bytes
from exporter.variants import OPENAI_URL_BASE, Architecture, folder_name, get_variant
from exporter.verify import References, Report, check, providers, tokenize
from exporter.weights import Weights, load_checkpoint, load_hub, load_url, random_weights

Log = Callable[[str], None]


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ClipOnnxError("--device cuda: PyTorch sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ClipOnnxError(f"unknown device {name!r}; choose cpu or cuda")
    return torch.device(name)


@contextlib.contextmanager
def _writer_lock(out_dir: Path, folder: Path) -> Iterator[None]:
    """Hold `<out>/.<folder>.lock` exclusively while an export writes `folder`: a second export of the same
    folder is refused at once. The lock is the open file descriptor's (flock), so a killed export leaves no
    lock behind, only the empty file, which the next export reuses and removes."""
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(out_dir / f".{folder.name}.lock", "a+")
    except OSError as error:
        raise ClipOnnxError(f"cannot create output folder {out_dir}: {error.strerror}; choose another --output") from None
    try:
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClipOnnxError(f"another export is writing {folder} now; wait for it to finish, or choose "
                                    f"another --output") from None
            try:
                yield
            finally:
                Path(lock.name).unlink(missing_ok=True)  # while still held: no other export holds this file
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first export leaves no empty folder behind


def _prepare_output(out_dir: Path, folder: Path, force: bool, needed_bytes: int) -> None:
    if folder.exists() and not force:
        raise ClipOnnxError(f"{folder} already exists; pass --force to replace it, or choose another --output")
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        raise ClipOnnxError(f"{out_dir} has {free / 1e9:.2f} GB free but this export needs about "
                            f"{needed_bytes / 1e9:.2f} GB; free some space or choose another --output")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(out_dir: Path, log: Log = print) -> list[Path]:
    """Remove the hidden `.<folder>.partial-<pid>-*` folders of exports whose process is gone (killed
    with SIGKILL, or the machine stopped); a live export's folder is left alone."""
    stale = []
    for partial in sorted(Path(out_dir).glob(".*.partial-*")):
        owner = partial.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if partial.is_dir() and owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(partial, ignore_errors=True)
            log(f"removed {partial}, left by an export (process {owner}) that no longer runs")
            stale.append(partial)
    return stale


def _translate_os_error(error: OSError, out_dir: Path) -> ClipOnnxError:
    if error.errno == errno.ENOSPC:
        return ClipOnnxError(f"no space left on the device holding {out_dir}; free some space or choose another --output")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ClipOnnxError(f"cannot write to {out_dir}: {error.strerror}; choose another --output")
    return ClipOnnxError(f"writing under {out_dir} failed: {error}")


def export(weights: Weights, name: str, out_dir: Path, *, precision: str = "fp32", opset: int = DEFAULT_OPSET,
           graphs: list[str] | None = None, verify: bool = True, force: bool = False, device: str = "cpu",
           extra_texts: list[str] | None = None, truncate: bool = False, log: Log = print) -> Path:
    """Export `weights.model` into `<out_dir>/<folder name>/`. The model is consumed: its BatchNorms are
    folded and it is converted to `precision` in place, then its weights are released before
    verification to bound peak memory."""
    graphs = graphs or list(GRAPHS)
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown:
        raise ClipOnnxError(f"unknown graph {', '.join(unknown)}; choose from {', '.join(GRAPHS)}")
    if precision not in PRECISIONS:
        raise ClipOnnxError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    out_dir = Path(out_dir)
    name = folder_name(name)  # the manifest's name and the files' stem
    folder = out_dir / export_folder(name, precision)
    model = weights.model.to(_device(device))
    if verify:
        providers(device)  # fail now, not after the export, if onnxruntime cannot run on `device`
    architecture = Architecture.of(model)
    if verify and extra_texts:
        tokenize(extra_texts, architecture.context_length, truncate)  # an over-long text fails before any write
    # until the graphs share their weights, forward holds every weight and visual + transformer hold them once more
    needed = weight_bytes(model) * (0.5 if precision == "fp16" else 1) * (2 if "forward" in graphs else 1) * 1.1
    with _writer_lock(out_dir, folder):
        _prepare_output(out_dir, folder, force, int(needed))
        remove_stale_partials(out_dir, log)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-{os.getpid()}-", dir=out_dir))
        except OSError as error:
            raise _translate_os_error(error, out_dir) from None
        try:
            references = None
            if verify:
                log("computing PyTorch float32 reference outputs")
                references = References.compute(model, graphs, extra_texts, truncate)
            logit_scale = float(model.logit_scale.detach().float())
            to_precision(fold_batch_norms(model), precision)
            memory.trim()  # the folded and converted weights replaced others
            graph_files = {}
            for index, key in enumerate(graphs, 1):
                spec = GRAPHS[key]
                started = time.perf_counter()
                log(f"[{index}/{len(graphs)}] exporting {spec.file_name(name)} ({precision}, opset {opset})")
                graph_files[key] = export_graph(model, spec, staging / spec.file_name(name), opset)
                if precision == "int8":
                    graph_files[key] = quantize.quantize(graph_files[key][0])
                log(f"      done in {time.perf_counter() - started:.1f} s")
            if "forward" in graph_files and len(graph_files) > 1:
                log(f"sharing the encoders' weights with {GRAPHS['forward'].file_name(name)}")
            graph_files = shared_weights.lay_out(graph_files, name, precision)
            memory.release(model)  # the weights live in the graphs now: free them before onnxruntime loads those
            stray = set(os.listdir(staging)) - {f.name for files in graph_files.values() for f in files}
            if stray:
                raise ClipOnnxError(f"the exporter wrote files no graph refers to: {', '.join(sorted(stray))}")
            report = None
            if references is not None:
                report = check(references, {k: files[0] for k, files in graph_files.items()}, precision, device, log,
                               strict=weights.source["kind"] != "checkpoint")
                log(report.table())
                if report.status == "failed":
                    raise VerificationError(f"{folder.name}: {report.problem()}; nothing was written to {folder}")
            consumer_files = [tokenizer.write(staging, architecture.context_length),
                              preprocess.write(staging, architecture.image_resolution)]
            data = manifest.build(name, architecture, weights.source, precision, opset, graph_files,
                                  consumer_files, logit_scale, report.to_json() if report else None)
            manifest.write(data, staging)
            _move_into_place(staging, folder)
            if report is not None and report.status == "inconclusive":
                raise InconclusiveError(f"{report.problem()}. The files are in {folder}; their manifest records "
                                        f"the verdict, and releases refuse them")
        except OSError as error:
            raise _translate_os_error(error, out_dir) from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        log(f"wrote {folder}")
        return folder


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename the finished staging folder to its final name, replacing an older export (--force)."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    if folder.exists():
        old = staging.with_name(staging.name + "-replaced")
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)


def load_source(source: dict, name: str | None, checkpoint: Path | None = None, cache_dir: Path | None = None,
                url_base: str | None = None, progress: bool = True) -> Weights:
    """The weights a manifest's `source` describes, the same bytes again (what `verify` re-runs PyTorch with)."""
    kind = source.get("kind")
    if kind == "random":
        return random_weights(get_variant(source["variant"]), source["seed"])
    if kind == "hub":
        weights, found = load_hub(get_variant(name or ""), source["revision"], progress=progress), "the Hub file"
    elif kind == "openai":
        weights = load_url(get_variant(name or ""), url_base or OPENAI_URL_BASE, cache_dir, progress)
        found = "the downloaded archive"
    elif kind == "checkpoint":
        path = Path(checkpoint or source["path"])
        weights, found = load_checkpoint(path), str(path)
    else:
        raise ClipOnnxError(f"the manifest's source {source!r} is not one clip-onnx knows")
    if weights.source["sha256"] != source["sha256"]:
        remedy = "pass the original with --checkpoint" if kind == "checkpoint" else "its source changed since the export"
        raise ClipOnnxError(f"{found} is not the {kind} these graphs were exported from (SHA-256 "
                            f"{weights.source['sha256']}, not {source['sha256']}); {remedy}")
    return weights


def verify_folder(folder: Path, checkpoint: Path | None = None, cache_dir: Path | None = None,
                  url_base: str | None = None, device: str = "cpu", extra_texts: list[str] | None = None,
                  truncate: bool = False, log: Log = print) -> Report:
    """Check an exported folder's files against its manifest, then re-run the PyTorch comparison."""
    folder = Path(folder)
    data = consumer_manifest.read(folder)
    integrity.check_files(data, folder)
    weights = load_source(data["source"], data.get("variant"), checkpoint, cache_dir, url_base)
    built = json.loads(json.dumps(Architecture.of(weights.model).to_json()))  # tuples as the manifest's lists
    if built != data["architecture"]:
        differs = ", ".join(f"{key} {built.get(key)} where the graphs have {value}"
                            for key, value in data["architecture"].items() if built.get(key) != value)
        raise VerificationError(f"{folder}: the weights its {consumer_manifest.MANIFEST} names are not the ones "
                                f"its graphs were exported from ({differs}); restore the manifest written with the "
                                f"graphs, or export again")
    model = weights.model.to(_device(device))
    graphs = list(data["graphs"])
    log("computing PyTorch float32 reference outputs")
    references = References.compute(model, graphs, extra_texts, truncate)
    report = check(references, {k: folder / g["file"] for k, g in data["graphs"].items()}, data["precision"], device, log,
                   strict=data["source"]["kind"] != "checkpoint")
    log(report.table())
    return report
