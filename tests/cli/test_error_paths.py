"""Every error path a user hits at the CLI: one line naming what was expected, exit 2, no
traceback, and nothing lost (a refused ``--resume`` leaves the run folder byte for byte)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archlab.cli import main

TRAIN = "pointer_net"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("archlab: error:"), err
    assert "Traceback" not in err
    assert needle in err, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def trained(capsys, tmp_path) -> tuple[Path, list[str]]:
    out = tmp_path / "run"
    argv = ["train", f"{TRAIN}/tiny", "--steps", "4", "--out", str(out)]
    flags = ["--set", "train.batch_size=8", "--set", "train.checkpoint_every=2"]
    assert run(capsys, *argv, *flags)[0] == 0
    return out, argv


def test_resume_on_a_folder_that_does_not_exist(capsys, tmp_path):
    out = tmp_path / "never-ran"
    code, _, err = run(capsys, "train", f"{TRAIN}/tiny", "--out", str(out), "--resume")
    one_line_error(code, err, "does not exist; nothing to resume")
    assert not out.exists()


def test_resume_with_every_checkpoint_corrupt(capsys, trained):
    out, argv = trained
    for f in (out / "checkpoints").glob("step-*/model.safetensors"):
        f.write_bytes(b"garbage")
    before = snapshot(out)
    code, _, err = run(capsys, *argv, "--resume", "--steps", "6")
    # --steps 6 differs from the recorded 4: refused before any checkpoint is read
    one_line_error(code, err, "different train")
    code, _, err = run(capsys, "train", f"{TRAIN}/tiny", "--out", str(out), "--resume")
    one_line_error(code, err, "no readable checkpoint")
    assert snapshot(out) == before


def test_resume_from_a_corrupt_newest_checkpoint_says_so(capsys, trained):
    out, _ = trained
    newest = (out / "checkpoints" / "latest").read_text().strip()
    (out / "checkpoints" / newest / "model.safetensors").write_bytes(b"garbage")
    code, _, err = run(capsys, "train", f"{TRAIN}/tiny", "--out", str(out), "--resume")
    assert code == 0
    assert f"archlab: warning: checkpoint {newest}" in err and "resuming from" in err


@pytest.mark.parametrize("content", [None, "{not json", '{"slug": "pointer_net"}', "[]"])
def test_resume_with_a_missing_or_corrupt_config_json(capsys, trained, content):
    out, _ = trained
    cfg = out / "config.json"
    if content is None:
        cfg.unlink()
    else:
        cfg.write_text(content)
    before = snapshot(out)
    code, _, err = run(capsys, "train", f"{TRAIN}/tiny", "--out", str(out), "--resume")
    one_line_error(code, err, "no config.json" if content is None else "is corrupt")
    assert snapshot(out) == before


def test_readme_resume_command_continues_the_recorded_run(capsys, tmp_path):
    """README: train with --set train.lr=3e-4, then the same command with --resume and without
    the --set: the recorded settings are the base, so this is the same run."""
    out = tmp_path / "ptr"
    base = ["train", f"{TRAIN}/tiny", "--steps", "6", "--out", str(out)]
    assert run(capsys, *base, "--set", "train.lr=3e-4", "--set", "train.batch_size=8")[0] == 0
    code, _, err = run(capsys, *base, "--resume")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 3e-4


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_learning_rate_is_refused(capsys, tmp_path, value):
    out = tmp_path / "run"
    code, _, err = run(
        capsys, "train", f"{TRAIN}/tiny", "--out", str(out), "--set", f"train.lr={value}"
    )
    one_line_error(code, err, "expected a finite float")
    assert not out.exists()


@pytest.mark.parametrize("content", ["", '{"slug": "x", "budget"', "[1, 2]", '{"seed": 0}'])
def test_report_on_a_truncated_result_json(capsys, tmp_path, content):
    folder = tmp_path / "runs" / "x" / "quick-seed0"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(content)
    code, _, err = run(capsys, "report", "--runs", str(tmp_path / "runs"), "--docs", str(tmp_path))
    one_line_error(code, err, "is not a readable result")


def test_budget_a_paper_does_not_have_is_refused_naming_its_budgets(capsys, tmp_path):
    from archlab.registry import list_papers

    paper = next(p for p in list_papers() if "full" not in p.budgets)
    code, _, err = run(capsys, "reproduce", paper.slug, "--budget", "full", "--out", str(tmp_path))
    one_line_error(code, err, f"{paper.slug} has no 'full' budget (it has: ")
    assert not any(tmp_path.iterdir())


def test_cuda_without_a_gpu_is_refused(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(
        capsys, "reproduce", TRAIN, "--budget", "smoke", "--device", "cuda", "--out", str(tmp_path)
    )
    one_line_error(code, err, "torch sees no CUDA device")


@pytest.mark.parametrize("slug,missing", [("maxim", "skimage"), ("hybridgnet", "skimage")])
def test_missing_optional_dependency_names_the_extra(tmp_path, slug, missing):
    """With only the core package, a paper whose extra is not installed answers with one line
    naming the extra, exit 2 (1 would mean "claim failed")."""
    code = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None  # as if not installed\n"
        "from archlab.cli import main\n"
        f"argv = ['reproduce', {slug!r}, '--budget', 'smoke', '--out', {str(tmp_path)!r}]\n"
        "sys.exit(main(argv))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert [x for x in r.stderr.splitlines() if x.startswith("archlab: error:")] == [
        r.stderr.splitlines()[-1]
    ]
    assert f"needs {missing!r}, which is not installed (pip install 'archlab[dense]')" in r.stderr


def test_reproduce_records_the_thread_policy_before_the_run(capsys, tmp_path):
    code, _, _ = run(
        capsys, "reproduce", "maxim", "--budget", "smoke", "--threads", "1", "--out", str(tmp_path)
    )
    assert code in (0, 1)
    data = json.loads((tmp_path / "maxim" / "smoke-seed0" / "result.json").read_text())
    assert data["threads"] == 1 and data["device"].startswith("cpu (1 threads")
    prov = data["provenance"]
    assert set(prov) >= {"commit", "dirty", "code_hash"} and len(prov["code_hash"]) == 64
