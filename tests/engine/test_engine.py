"""Engine: resume bit-identity after SIGKILL, atomic checkpoints, NaN guard, DDP parity."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from archlab.engine import (
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)
from archlab.engine.checkpoint import atomic_write_text, flatten_state, unflatten_state
from archlab.engine.optim import lr_factor

SCRIPT = Path(__file__).with_name("toy_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), str(out), *extra]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=check, timeout=120)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("data", ["dataset", "stream"])
def test_resume_after_sigkill_is_bit_identical(tmp_path, data):
    steps = "60"
    ref = tmp_path / "ref"
    _run(ref, "--steps", steps, "--data", data, "--sleep", "0.005")
    killed = tmp_path / "killed"
    for delay in (0.15, 0.05):  # kill twice at different moments, resume each time
        cmd = [sys.executable, str(SCRIPT), str(killed), "--steps", steps, "--data", data]
        cmd += ["--sleep", "0.005", "--resume"]
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not (killed / "checkpoints" / "latest").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it was killed"
    _run(killed, "--steps", steps, "--data", data, "--sleep", "0.005", "--resume")
    _assert_identical(_weights(ref), _weights(killed))
    rows = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    steps_logged = [r["step"] for r in rows if "loss" in r]
    assert steps_logged == list(range(1, int(steps) + 1)), "metrics lines lost or duplicated"
    ref_rows = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows if "loss" in r] == [r["loss"] for r in ref_rows if "loss" in r]


def test_checkpoint_write_crash_keeps_previous(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 5, model, {"step": 5, "x": torch.ones(2)})
    import archlab.engine.checkpoint as ck

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated crash mid-write)")

    monkeypatch.setattr(ck, "atomic_write_text", boom)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError):
        save_checkpoint(root, 10, model, {"step": 10})
    monkeypatch.undo()
    step, weights, state = load_checkpoint(root)
    assert step == 5 and torch.equal(state["x"], torch.ones(2))
    assert not any(p.name.startswith(".step") for p in root.iterdir()), "temporary left behind"
    assert not (root / "step-00000010").exists()


def test_corrupt_latest_falls_back_to_previous(tmp_path):
    model = torch.nn.Linear(3, 2)
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 1, model, {"a": 1})
    save_checkpoint(root, 2, model, {"a": 2})
    (root / "step-00000002" / "state.safetensors").write_bytes(b"garbage")  # torn file
    step, _, state = load_checkpoint(root)
    assert step == 1 and state["a"] == 1
    (root / "step-00000001" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(root)


def test_atomic_write_text_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_state_flatten_round_trip():
    import numpy as np

    state = {
        "t": torch.arange(3),
        "n": np.arange(4, dtype=np.uint32),
        "tup": (1, "a", 2.5, None, True),
        "nested": {"x": [torch.zeros(2), {"y": 3}]},
        1: "int key",
        "inf": float("inf"),
    }
    skeleton, tensors = flatten_state(state)
    json.dumps(skeleton)
    back = unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert torch.equal(back["t"], state["t"]) and back["n"].dtype == np.uint32
    assert back["tup"] == state["tup"] and back[1] == "int key" and back["inf"] == float("inf")
    assert torch.equal(back["nested"]["x"][0], torch.zeros(2))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    r = _run(tmp_path, "--steps", "20", "--nan-at", "8", "--checkpoint-every", "3", check=False)
    assert r.returncode != 0
    assert "loss became nan at step 8" in r.stderr
    step, _, _ = load_checkpoint(tmp_path / "checkpoints")
    assert step == 6
    assert not (tmp_path / "model.safetensors").exists()


def test_nan_guard_in_process():
    model = torch.nn.Linear(2, 1)

    def loss_fn(m, batch):
        return m(batch).sum() * float("nan"), {}

    trainer = Trainer(model, loss_fn, TrainConfig(steps=3, progress=False))
    before = model.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match="training stopped"):
        trainer.fit(lambda bs, g: torch.randn(bs, 2, generator=g))
    assert torch.equal(before, model.weight), "a NaN step must not update the weights"


def test_train_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)


def test_schedules():
    assert lr_factor(0, 100, 10, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process(tmp_path):
    single = tmp_path / "single"
    _run(single, "--steps", "12", "--no-dropout", "--checkpoint-every", "0")
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(SCRIPT),
        str(ddp),
        "--steps",
        "12",
        "--no-dropout",
        "--checkpoint-every",
        "0",
    ]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _weights(single), _weights(ddp)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    rows = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    ddp_loss = [r["loss"] for r in rows if "loss" in r]
    assert len(ddp_loss) == 12, "every step logged once, by rank 0"
    # the logged loss is the mean over processes, i.e. the global-batch loss
    assert ddp_loss == pytest.approx([r["loss"] for r in ref if "loss" in r], rel=1e-5)


def test_fit_leaves_the_callers_random_state_alone_and_is_seeded():
    """Trainer.fit runs under its own random state seeded from cfg.seed: the caller's global
    generators are what they were, and two fits with the same seed end equal."""
    import random

    import numpy as np

    w = torch.tensor([[1.0, -2.0]])

    def data(batch_size, generator):
        x = torch.randn(batch_size, 2, generator=generator)
        return x, x @ w.T

    def loss_fn(m, batch):
        x, y = batch
        out = torch.nn.functional.dropout(m(x), 0.1)  # draws from the global generator
        return torch.nn.functional.mse_loss(out, y), {}

    cfg = TrainConfig(steps=200, batch_size=16, lr=0.05, seed=3, progress=False, device="cpu")
    finals = []
    for _ in range(2):
        torch.manual_seed(11)
        random.seed(11)
        np.random.seed(11)
        model = torch.nn.Linear(2, 1)
        before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
        Trainer(model, loss_fn, cfg).fit(data)
        assert torch.equal(torch.get_rng_state(), before[0])
        assert random.getstate() == before[1]
        assert np.array_equal(np.random.get_state()[1], before[2])
        finals.append(model.weight.detach().clone())
    assert torch.equal(finals[0], finals[1])
