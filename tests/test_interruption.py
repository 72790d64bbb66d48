"""Interruptions: a training run killed with SIGKILL resumes to the numbers of an uninterrupted run.

``train_agent.py`` writes ``checkpoints/last.pt`` atomically (temporary file, fsync, rename:
:func:`agents.checkpoints.save_checkpoint`), so a run killed at any moment, even during a write,
leaves the previous complete checkpoint, and ``--resume`` repeats the lost iterations with the same
numbers (each iteration's dialogs and draws are seeded by its index). Ctrl-C (SIGINT) is covered in
``tests/test_agents.py``; here nothing is saved on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dialog_env
from agents.checkpoints import load_checkpoint, save_checkpoint
from dialog_env.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_ITERATIONS, IMPROVE_ITERATIONS = 80, 24
BUDGET = [
    "--pretrain-iterations", str(PRETRAIN_ITERATIONS), "--improve-iterations", str(IMPROVE_ITERATIONS),
    "--batch-size", "4", "--train-turns", "2", "--max-turns", "3", "--eval-episodes", "20",
    "--checkpoint-every", "2", "--no-progress", "--no-eval-random", "--seed", "4",
    # One torch thread: on a busy machine, torch's default (one per core) can be 15x slower here.
    "--torch-threads", "1",
]  # fmt: skip
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    catalog = dialog_env.make_synthetic_shoes(num_train=200, num_test=80, dim=16, seed=3)
    return str(catalog.save(tmp_path_factory.mktemp("catalog") / "small.h5"))


def _start(folder: Path, run_name: str, catalog_file: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    """Start ``train_agent.py --agent paper`` in the background; stdout and stderr go to a log file."""
    log = folder / f"{run_name}-{len(list(folder.glob(f'{run_name}-*.log')))}.log"
    command = [sys.executable, str(ROOT / "train_agent.py"), "--agent", "paper", "--catalog", catalog_file,
               "--runs-dir", str(folder), "--run-name", run_name, *BUDGET, *extra]  # fmt: skip
    with open(log, "w") as handle:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=folder)
    return process, log


def _finish(process: subprocess.Popen, log: Path, returncode: int = 0) -> str:
    """Wait for the run to end with ``returncode``; returns its output."""
    try:
        process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"train_agent.py did not finish within {TIMEOUT_S} s:\n{log.read_text()}")
    output = log.read_text()
    assert process.returncode == returncode, output
    return output


def _kill_during(process: subprocess.Popen, log: Path, last: Path, stage: str, min_iteration: int) -> dict:
    """SIGKILL the run as soon as ``last.pt`` holds ``stage`` at ``min_iteration`` or later.

    Returns the checkpoint found on disk after the kill (it may be newer than the one that
    triggered the kill: the run keeps going until the signal lands).
    """
    stages = ["pretrain", "improve", "done"]
    deadline = time.monotonic() + TIMEOUT_S
    seen = None
    try:
        while True:
            assert process.poll() is None, f"the run ended before {stage} iteration {min_iteration}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {stage} checkpoint >= {min_iteration} in {TIMEOUT_S} s"
            try:
                stat = last.stat()
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_ino, stat.st_mtime_ns) != seen:  # each write is a new file
                seen = (stat.st_ino, stat.st_mtime_ns)
                payload = load_checkpoint(last)  # never a partial file: writes are renamed into place
                assert stages.index(payload["stage"]) <= stages.index(stage), (
                    f"the run passed {stage} iteration {min_iteration} before it could be killed"
                )
                if payload["stage"] == stage and payload["iteration"] >= min_iteration:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        if process.poll() is None:  # a failed check above: do not leave the run behind
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return load_checkpoint(last)


def _check_leftovers(checkpoints: Path, expected: set[str]) -> None:
    """Besides the complete checkpoints, only hidden temporary files of interrupted writes may be
    there, which no reader takes for a checkpoint."""
    for path in checkpoints.iterdir():
        if path.name not in expected:
            assert path.name.startswith(".") and ".pt.tmp-" in path.name, f"unexpected file {path.name}"


def _plant_partial_write(checkpoints: Path) -> Path:
    """What a kill during a write leaves: half of a checkpoint under a temporary name."""
    data = (checkpoints / "last.pt").read_bytes()
    partial = checkpoints / ".last.pt.tmp-999999"
    partial.write_bytes(data[: len(data) // 2])
    return partial


def test_sigkill_in_stage_1_and_stage_2_then_resume_gives_the_uninterrupted_results(tmp_path, catalog_file):
    checkpoints = tmp_path / "killed" / "checkpoints"
    last = checkpoints / "last.pt"

    # Stage 1: kill after a few checkpoints.
    process, log = _start(tmp_path, "killed", catalog_file)
    stopped = _kill_during(process, log, last, "pretrain", min_iteration=6)
    assert stopped["stage"] == "pretrain" and 6 <= stopped["iteration"] < PRETRAIN_ITERATIONS
    _check_leftovers(checkpoints, {"last.pt"})
    partial = _plant_partial_write(checkpoints)
    with pytest.raises(ConfigurationError, match="could not be read"):
        load_checkpoint(partial)

    # Resume; kill again in stage 2.
    process, log = _start(tmp_path, "killed", catalog_file, "--resume")
    stopped_2 = _kill_during(process, log, last, "improve", min_iteration=4)
    assert not partial.exists(), "--resume removes the temporary files of interrupted writes"
    output = log.read_text()
    assert f"resumed from {last}: stage pretrain, iteration {stopped['iteration']}\n" in output
    assert stopped_2["stage"] == "improve" and 4 <= stopped_2["iteration"] < IMPROVE_ITERATIONS
    assert set(stopped_2["results"]) == {"paper-stage1"}
    _check_leftovers(checkpoints, {"last.pt", "stage1.pt"})
    partial = _plant_partial_write(checkpoints)

    # Resume to the end.
    process, log = _start(tmp_path, "killed", catalog_file, "--resume")
    output = _finish(process, log)
    assert f"resumed from {last}: stage improve, iteration {stopped_2['iteration']}\n" in output
    _check_leftovers(checkpoints, {"last.pt", "stage1.pt", "final.pt"})
    assert not partial.exists()
    assert load_checkpoint(checkpoints / "final.pt")["stage"] == "done"

    process, log = _start(tmp_path, "straight", catalog_file)
    _finish(process, log)
    killed, straight = (json.loads((tmp_path / run / "metrics.json").read_text())["results"]
                        for run in ("killed", "straight"))  # fmt: skip
    assert set(straight) == {"paper-stage1", "paper-stage2"}
    assert killed == straight  # every per-turn number, exactly


def test_resume_refuses_a_damaged_last_checkpoint(tmp_path, catalog_file):
    last = tmp_path / "damaged" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut short by a crash")
    output = _finish(*_start(tmp_path, "damaged", catalog_file, "--resume"), returncode=2)
    assert f"error: checkpoint {str(last)!r} could not be read (truncated or corrupted?)" in output
    assert "Traceback" not in output


# ---------------------------------------------------------------------------- checkpoint files
def _payload(iteration: int) -> dict:
    return {"stage": "pretrain", "iteration": iteration, "model": {"weight": torch.arange(4096.0) * iteration},
            "model_config": {"image_dim": 16}, "vocabulary": ["black", "higher"]}  # fmt: skip


@pytest.mark.parametrize("crash", ["before the rename", "during torch.save"])
def test_an_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, crash):
    last = tmp_path / "last.pt"
    save_checkpoint(last, _payload(1))
    before = last.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("simulated crash")

    if crash == "before the rename":
        monkeypatch.setattr(os, "replace", fail)
    else:
        real_save = torch.save

        def save_half(obj, handle, *args, **kwargs):  # write part of the file, then crash
            real_save(obj, handle, *args, **kwargs)
            handle.truncate(handle.tell() // 2)
            fail()

        monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(last, _payload(2))
    monkeypatch.undo()

    assert last.read_bytes() == before
    payload = load_checkpoint(last, image_dim=16, vocabulary_words=["black", "higher"])
    assert payload["iteration"] == 1 and torch.equal(payload["model"]["weight"], torch.arange(4096.0))
    for leftover in (path for path in tmp_path.iterdir() if path != last):  # if the writer did not remove it
        assert leftover.name.startswith(".last.pt.tmp-")
        with pytest.raises(ConfigurationError, match="could not be read"):
            load_checkpoint(leftover)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:-16],
        lambda data: b"",
        lambda data: b"\x00" * 64 + data[64:],
        lambda data: b"not a checkpoint\n" * 8,
    ],
    ids=["truncated to half", "last bytes missing", "empty", "corrupted header", "not a torch file"],
)
def test_a_damaged_checkpoint_raises_configuration_error_naming_the_file(tmp_path, damage):
    last = tmp_path / "last.pt"
    save_checkpoint(last, _payload(3))
    last.write_bytes(damage(last.read_bytes()))
    with pytest.raises(ConfigurationError, match="could not be read") as error:
        load_checkpoint(last)
    assert repr(str(last)) in str(error.value)


def test_a_torch_file_that_is_not_a_checkpoint_is_refused_by_name(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(
        ConfigurationError, match="weights.pt.* is not a checkpoint .*expected .dialog-env-checkpoint."
    ) as error:
        load_checkpoint(path)
    assert repr(str(path)) in str(error.value)


# ---------------------------------------------------------------------------- every stage resumes
SHORT = ["--pretrain-iterations", "10", "--improve-iterations", "4", "--eval-episodes", "1500"]


def _metrics(run_dir: Path) -> dict:
    """``metrics.json`` without its wall time, the one entry that differs between two runs."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("wall_seconds")
    return metrics


def test_sigkill_during_the_final_evaluation_then_resume_gives_the_uninterrupted_metrics(tmp_path, catalog_file):
    run_dir = tmp_path / "killed"
    process, log = _start(tmp_path, "killed", catalog_file, *SHORT)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while "evaluating paper-stage2" not in log.read_text():
            assert process.poll() is None, f"the run ended before its final evaluation:\n{log.read_text()}"
            assert time.monotonic() < deadline, "no final evaluation"
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:  # a failed check above: do not leave the run behind
            process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "killed too late: the evaluation had finished"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["stage"] == "done"

    output = _finish(*_start(tmp_path, "killed", catalog_file, *SHORT, "--resume"))
    assert "resumed from" in output and "stage done" in output
    _finish(*_start(tmp_path, "straight", catalog_file, *SHORT))
    killed, straight = _metrics(run_dir), _metrics(tmp_path / "straight")
    for metrics, name in ((killed, "killed"), (straight, "straight")):  # the two runs' names differ, nothing else
        assert metrics.pop("run") == metrics["args"].pop("run_name") == name
    assert set(straight["results"]) == {"paper-stage1", "paper-stage2"}
    assert killed == straight  # every per-turn number, the arguments, the episodes, the versions

    # A finished run: --resume says so and exits 0, leaving its results as they are.
    before = (run_dir / "metrics.json").read_bytes()
    output = _finish(*_start(tmp_path, "killed", catalog_file, *SHORT, "--resume"))
    assert "run killed is complete" in output and "metrics.json" in output
    assert (run_dir / "metrics.json").read_bytes() == before
