"""The command line end to end, and every expected failure: one clear line, non-zero exit, no partial file."""

from __future__ import annotations

import collections
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import cli, export, pipeline
from exporter.variants import VARIANTS, get_variant
from exporter.weights import random_weights

CLI = [sys.executable, "-m", "exporter"]


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("clip-onnx")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def nothing_left(out: Path) -> bool:
    return not out.exists() or os.listdir(out) == []


def test_list_names_the_openai_variants_and_test_configurations_only_on_request():
    result = run("list")
    assert result.returncode == 0
    for variant in VARIANTS.values():
        assert (variant.name in result.stdout) == variant.published
    result = run("list", "--all")
    assert result.returncode == 0 and all(name in result.stdout for name in VARIANTS)


def test_list_argument_errors_and_an_offline_export_answer_without_importing_torch(tmp_path):
    probe = ("import sys\nfrom exporter.cli import main\n"
             "codes = [main(['list', '--all']), main(['export', 'ViT-B/99']), main(['export']),\n"
             f"         main(['export', 'ViT-B/32', '-o', {str(tmp_path / 'out')!r}, '--cache-dir', {str(tmp_path / 'cache')!r}])]\n"
             "print(codes, 'torch' in sys.modules)")
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=offline)
    assert result.stdout.strip().splitlines()[-1] == "[0, 1, 2, 1] False", result.stdout + result.stderr
    assert "unknown variant 'ViT-B/99'" in result.stderr and "name a variant" in result.stderr
    assert "no source gave ViT-B/32's weights" in result.stderr and "--weights random" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # nothing made, not even empty


def test_the_parameter_counts_list_shows_are_torchs():
    import torch

    for variant in VARIANTS.values():
        with torch.device("meta"):
            counted = sum(p.numel() for p in variant.architecture.build().parameters())
        assert variant.architecture.parameter_count() == counted, variant.name


def test_installed_command_and_help_teach_usage():
    result = subprocess.run([str(Path(sys.executable).parent / "clip-onnx"), "export", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    for text in ("--weights", "random", "--precision", "--graphs", "--force", "examples:"):
        assert text in result.stdout


def test_export_then_verify_end_to_end(tmp_path):
    out = tmp_path / "dist"
    result = run("export", "tiny-ViT", "--weights", "random", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stdout and "[3/3]" in result.stdout
    folder = out / "tiny-ViT"
    names = {"tiny-ViT.onnx", "tiny-ViT_visual.onnx", "tiny-ViT_transformer.onnx", "tiny-ViT_visual.onnx.data",
             "tiny-ViT_transformer.onnx.data", "manifest.json", "tokenizer.json", "preprocess.json"}
    assert set(os.listdir(folder)) == names and os.listdir(out) == ["tiny-ViT"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == {"kind": "random", "seed": 0, "variant": "tiny-ViT"}
    assert manifest["verification"]["status"] == "passed"
    assert manifest["tokenizer"]["start_token_id"] == 49406 and manifest["tokenizer"]["end_token_id"] == 49407
    pinned = re.search(r'"ftfy==([^"]+)"', (Path(__file__).parent.parent / "pyproject.toml").read_text()).group(1)
    assert manifest["tokenizer"]["ftfy"] == pinned  # the version the ports of ftfy follow
    assert manifest["preprocessing"] == {"file": "preprocess.json", "resolution": 32}
    assert json.loads((folder / "preprocess.json").read_text())["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"].values())

    verified = run("verify", str(folder))
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout

    # a manifest whose source names another variant's weights: refused before any comparison, exit 3
    other = json.loads((folder / "manifest.json").read_text())
    other["source"]["variant"] = "tiny-RN"
    (folder / "manifest.json").write_text(json.dumps(other))
    assert_clean_error(run("verify", str(folder)), 3, "are not the ones its graphs were exported from (",
                       "family ResNet where the graphs have ViT")
    (folder / "manifest.json").write_text(json.dumps(manifest))

    assert_clean_error(run("export", "tiny-ViT", "--weights", "random", "-o", str(out)), 1, "already exists", "--force")

    graph = folder / "tiny-ViT_visual.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    assert_clean_error(run("verify", str(folder)), 1, "does not match the SHA-256")

    forced = run("export", "tiny-ViT", "--weights", "random", "-o", str(out), "--force", "--graphs", "visual")
    assert forced.returncode == 0, forced.stderr
    consumer_files = {"manifest.json", "tokenizer.json", "preprocess.json"}
    assert set(os.listdir(folder)) == {"tiny-ViT_visual.onnx", "tiny-ViT_visual.onnx.data", *consumer_files}
    assert os.listdir(out) == ["tiny-ViT"]


@pytest.mark.parametrize("args,code,fragments", [
    (["export", "ViT-B/33", "--weights", "random"], 1, ["unknown variant 'ViT-B/33'", "ViT-B/32", "RN50x64"]),
    (["export"], 2, ["name a variant"]),
    (["export", "RN50", "--checkpoint", "x.pt"], 2, ["give a variant or --checkpoint, not both"]),
    (["export", "RN50", "--weights", "random", "--seed", "-5"], 2, ["--seed", "-5 is less than 0"]),
    (["export", "--checkpoint", "/nonexistent.pt"], 1, ["does not exist"]),
    (["verify", "/nonexistent"], 1, ["/nonexistent does not exist"]),
    (["export", "ViT-B/32", "--url-base", "not a url"], 2, ["--url-base", "is not an http(s) URL"]),
    (["export", "--checkpoint", "x.pt", "--weights", "random"], 2, ["drop --weights random"]),
    (["export", "--checkpoint", "x.pt", "--name", " "], 2, ["--name is empty"]),
    (["export", "RN50", "--opset", "17"], 2, ["--opset", "18"]),
    (["export", "RN50", "--graphs", "visual,text"], 2, ["--graphs", "forward,visual,transformer"]),
    (["export", "RN50", "--graphs", "visual, visual"], 2, ["--graphs", "names visual twice; name each graph once"]),
    (["embed", "-m", "/nonexistent"], 2, ["nothing to embed"]),
    (["classify", "a.png", "-m", "/x", "--labels", "a", "--template", "{x} {}"], 2, ["--template", "exactly once"]),
], ids=["unknown-variant", "no-variant", "variant-and-checkpoint", "negative-seed", "missing-checkpoint",
        "not-an-export", "url-base-not-a-url", "checkpoint-and-random", "empty-name", "opset-too-old", "unknown-graph", "graph-twice", "nothing-to-embed", "template-field"])
def test_bad_input_is_one_clear_line(tmp_path, args, code, fragments):
    result = run(*args, "-o", str(tmp_path / "out")) if args[0] == "export" else run(*args)
    if code == 2:  # a usage error: argparse's usage line plus one error line, or our one line
        assert result.returncode == 2 and all(f in result.stderr for f in fragments), result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert "Traceback" not in result.stderr and "error: " in last and fragments[-1] in last
    else:
        assert_clean_error(result, code, *fragments)
    assert nothing_left(tmp_path / "out")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("export", "tiny-ViT", "--weights", "random", "-o", str(blocker / "out"))
    assert_clean_error(result, 1, "cannot create output folder", "--output")


def test_not_enough_disk_space_is_refused_before_work(tmp_path, monkeypatch, capsys):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda _: usage(10**12, 10**12 - 1000, 1000))
    assert cli.main(["export", "tiny-ViT", "--weights", "random", "-o", str(tmp_path)]) == 1
    assert "GB free" in capsys.readouterr().err
    assert nothing_left(tmp_path)


def test_disk_full_mid_export_leaves_nothing(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "export_graph", full)
    assert cli.main(["export", "tiny-ViT", "--weights", "random", "-o", str(tmp_path)]) == 1
    assert "no space left" in capsys.readouterr().err
    assert nothing_left(tmp_path)


def test_failed_verification_keeps_nothing_publishable(tmp_path, monkeypatch, capsys):
    """A graph that is off by 0.1% (cosine still 1.0) fails the fp32 table and is not kept."""
    monkeypatch.setattr(export, "encode_image", lambda model, image: model.encode_image(image).float() * 1.001)
    code = cli.main(["export", "tiny-ViT", "--weights", "random", "-o", str(tmp_path), "--graphs", "visual"])
    captured = capsys.readouterr()
    assert code == 3
    assert "FAIL" in captured.out and "verification failed" in captured.err
    assert nothing_left(tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_mid_export_leaves_nothing(tmp_path, signum):
    """Ctrl-C, `kill` and a closed terminal all undo the export in progress."""
    out = tmp_path / "out"
    # A shell starting a background job (as CI may run us) ignores SIGINT and children inherit
    # that; give the child the default disposition, as an interactive terminal would.
    child = subprocess.Popen([*CLI, "export", "tiny-ViT", "--weights", "random", "-o", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (out.exists() and any(p.glob("*.onnx") for p in out.iterdir())):
        assert child.poll() is None and time.monotonic() < deadline, "export ended before it could be interrupted"
        time.sleep(0.2)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=120)
    # Our handler cleans up and returns 128 + the signal, yet after Ctrl-C the interpreter sometimes
    # still ends the process by SIGINT (seen 1 run in 10 here and once in CI, always after our message
    # was printed; the cause inside CPython was not pinned down). A shell shows both as the same
    # status; either way our handler must have run.
    assert child.returncode in (128 + signum, -signum), stderr
    assert f"interrupted ({signum.name}); no partial file was left under a final name" in stderr and "Traceback" not in stderr
    assert nothing_left(out)


def test_an_object_an_interrupt_left_half_built_adds_nothing_to_the_interrupted_line():
    """Ctrl-C inside a library's __init__ (imageio's Pillow plugin, reading the sample photos) leaves an
    object whose __del__ fails as the process ends; the user still sees only the one line."""
    program = ("import sys\n"
               "from clip_onnx import cli\n"
               "class HalfBuilt:\n"
               "    def __init__(self):\n"
               "        raise KeyboardInterrupt\n"
               "    def __del__(self):\n"
               "        self.never_set\n"
               "def handler(_):\n"
               "    global kept\n"
               "    kept = HalfBuilt.__new__(HalfBuilt)\n"
               "    kept.__init__()\n"
               "sys.exit(cli.run(handler, None))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGINT
    assert result.stderr == "clip-onnx: interrupted (SIGINT)\n"


def test_a_killed_exports_hidden_folder_is_removed_by_the_next(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    stale = out / f".tiny-RN.partial-{dead.pid}-abcd1234"
    stale.mkdir(parents=True)
    (stale / "tiny-RN_visual.onnx").write_bytes(b"half a graph")
    live = out / f".tiny-RN.partial-{os.getpid()}-efgh5678"  # a running export's: kept
    live.mkdir()
    lines = []
    pipeline.export(random_weights(get_variant("tiny-RN")), "tiny-RN", out, graphs=["transformer"], verify=False,
                    log=lines.append)
    assert not stale.exists() and live.is_dir()
    assert f"removed {stale}, left by an export (process {dead.pid}) that no longer runs" in lines


def test_a_second_export_of_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    """The first export's lock (flock on `.tiny-RN.lock`) is held here; the second refuses at once and
    writes nothing. A lock file left by a killed export (no holder) blocks nothing and is removed."""
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".tiny-RN.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run("export", "tiny-RN", "--weights", "random", "-o", str(out), "--graphs", "transformer")
        assert_clean_error(refused, 1, f"another export is writing {out / 'tiny-RN'} now; wait for it to finish")
        assert os.listdir(out) == [".tiny-RN.lock"]
    pipeline.export(random_weights(get_variant("tiny-RN")), "tiny-RN", out, graphs=["transformer"], verify=False,
                    log=lambda _: None)
    assert os.listdir(out) == ["tiny-RN"]


def test_subset_without_verification(tmp_path):
    result = run("export", "tiny-RN", "--weights", "random", "-o", str(tmp_path), "--graphs", "transformer",
                 "--no-verify")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "tiny-RN" / "manifest.json").read_text())
    assert list(manifest["graphs"]) == ["transformer"] and manifest["verification"] == {"skipped": True}


def test_user_texts_longer_than_the_context_need_truncate(tmp_path):
    long = "a photo of " + "a very very long caption " * 30
    out = tmp_path / "dist"
    refused = run("export", "tiny-ViT", "--weights", "random", "-o", str(out), "--graphs", "transformer",
                  "--text", "a short one", "--text", long)
    assert_clean_error(refused, 1, f"--text {long[:60] + '...'!r} is longer than 77 tokens; shorten it or pass "
                                   f"--truncate")
    assert long not in refused.stderr and not out.exists()  # not even an empty -o folder
    accepted = run("export", "tiny-ViT", "--weights", "random", "-o", str(tmp_path), "--graphs", "transformer",
                   "--text", long, "--text", "a second caption", "--truncate")
    assert accepted.returncode == 0, accepted.stderr
    assert "user-texts" in accepted.stdout


def test_one_graph_exported_alone_keeps_its_weights_in_its_data_file_and_verifies(tmp_path):
    assert cli.main(["export", "tiny-ViT", "--weights", "random", "-o", str(tmp_path), "--graphs", "visual"]) == 0
    folder = tmp_path / "tiny-ViT"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["graphs"]["visual"]["files"] == ["tiny-ViT_visual.onnx", "tiny-ViT_visual.onnx.data", "preprocess.json"]
    assert set(manifest["files"]) == {"tiny-ViT_visual.onnx", "tiny-ViT_visual.onnx.data", "tokenizer.json",
                                      "preprocess.json"}
    assert (folder / "tiny-ViT_visual.onnx").stat().st_size < (folder / "tiny-ViT_visual.onnx.data").stat().st_size
    assert pipeline.verify_folder(folder, log=lambda _: None).passed


def test_each_precision_has_its_own_folder_as_in_a_release(tmp_path):
    """fp16 goes to `<name>-fp16/` (the release layout), so it never replaces the fp32 export."""
    for precision in ("fp32", "fp16"):
        pipeline.export(random_weights(get_variant("tiny-RN")), "tiny-RN", tmp_path, precision=precision,
                        graphs=["transformer"], verify=False, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-RN", "tiny-RN-fp16"]
    for folder, precision in (("tiny-RN", "fp32"), ("tiny-RN-fp16", "fp16")):
        manifest = json.loads((tmp_path / folder / "manifest.json").read_text())
        assert manifest["precision"] == precision and manifest["name"] == "tiny-RN"
        assert (tmp_path / folder / "tiny-RN_transformer.onnx").is_file()
