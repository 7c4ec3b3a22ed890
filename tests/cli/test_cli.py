"""CLI: exit codes (0 holds, 1 claim failed, 2 usage error) and one-line messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archlab.cli import main
from archlab.lab.result import Check, Result
from archlab.papers import INDEX

SLUG = next(iter(INDEX))
TRAIN = "pointer_net"  # a paper with a single training loop (SPEC.task)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(capsys):
    code, out, _ = run(capsys, "list", "--markdown")
    assert code == 0 and f"`{SLUG}`" in out and out.startswith("| paper |")
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0 and SLUG in [p["slug"] for p in json.loads(out)]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["show", SLUG[:-1] + "x"], f"did you mean '{SLUG}'"),
        (["reproduce", "nope_paper"], "unknown model"),
        (["reproduce", "--budget", "quik", SLUG], "did you mean 'quick'"),
        (["reproduce"], "at least one paper"),
        (["reproduce", "lstm_seq2seq"], "baseline"),
        (["train", f"{TRAIN}/tiny", "--out", "x", "--set", "model.nope=1"], "unknown field"),
        (
            ["train", f"{TRAIN}/tiny", "--out", "x", "--set", "train.lr=abc"],
            "expected a finite float",
        ),
        (["train", f"{TRAIN}/tiny", "--out", "x", "--set", "lr=1"], "model.<field>"),
        (["train", f"{TRAIN}/huge", "--out", "x"], "unknown variant"),
        (["new", "visoin/foo"], "did you mean 'vision'"),
        (["report", "--runs", "/nonexistent-runs"], "no result.json"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2


def _fake_result(holds: bool) -> Result:
    r = Result(SLUG, "t", "c", "smoke", 0, metrics={"m": 1.0})
    r.checks.append(Check("x", holds, "measured"))
    return r


@pytest.mark.parametrize("holds,code", [(True, 0), (False, 1)])
def test_reproduce_exit_code_follows_claim(capsys, monkeypatch, tmp_path, holds, code):
    import archlab.lab.runner as rr

    def fake(slug, budget, seed, out, device):
        return _fake_result(holds)

    monkeypatch.setattr(rr, "reproduce", fake)
    got, out, _ = run(capsys, "reproduce", SLUG, "--budget", "smoke", "--out", str(tmp_path))
    assert got == code
    assert ("HOLDS" if holds else "DOES NOT HOLD") in out


def test_report_writes_markdown_and_html(capsys, tmp_path):
    runs = tmp_path / "runs"
    _fake_result(True).save(runs / SLUG / "smoke-seed0")
    readme = tmp_path / "README.md"
    readme.write_text(
        "a\n<!-- papers:start -->\n<!-- papers:end -->\n"
        "<!-- results:start -->\nold\n<!-- results:end -->\nb\n"
    )
    code, _, _ = run(
        capsys,
        "report",
        "--runs",
        str(runs),
        "--docs",
        str(tmp_path / "docs"),
        "--readme",
        str(readme),
    )
    assert code == 0
    md = (tmp_path / "docs" / "results.md").read_text()
    assert f"`{SLUG}`" in md and "| x | claim | yes | measured |" in md
    assert "<html>" in (tmp_path / "docs" / "results.html").read_text()
    text = readme.read_text()
    assert "\nold\n" not in text and f"`{SLUG}`" in text and text.endswith("b\n")
    assert "| paper | family |" in text


def test_new_scaffolds_a_paper_that_builds(tmp_path):
    import shutil

    from archlab.cli.new import PACKAGE, new_paper

    root = tmp_path / "repo"
    shutil.copytree(PACKAGE, root / "src" / "archlab")
    created = new_paper("graphs/toy_paper", root=root, title="A toy")
    assert any(p.name == "model.py" for p in created)
    index = (root / "src" / "archlab" / "papers" / "__init__.py").read_text()
    lines = [x for x in index.splitlines() if x.startswith('    "')]
    assert lines == sorted(lines) and any("toy_paper" in x for x in lines)
    assert "budgets=(" in index
    code = (
        "import archlab; m = archlab.build('toy_paper/tiny'); "
        "r = archlab.reproduce('toy_paper', 'smoke', 0, out=False); print(r.holds)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(root / "src"), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-1500:]


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "archlab.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "reproduce" in out.stdout


def test_train_writes_run_folder_and_resumes(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", f"{TRAIN}/tiny", "--steps", "4", "--out", str(out)]
    code, _, _ = run(capsys, *argv, "--set", "train.batch_size=8", "--set", "train.log_every=1")
    assert code == 0
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "checkpoints/latest"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["batch_size"] == 8 and cfg["slug"] == TRAIN
    # resuming a finished run is a no-op; resuming with other settings is refused
    code, _, _ = run(
        capsys, *argv, "--resume", "--set", "train.batch_size=8", "--set", "train.log_every=1"
    )
    assert code == 0
    code, _, err = run(capsys, *argv, "--resume", "--set", "train.batch_size=4")
    assert code == 2 and "different train" in err
