"""Data-parallel training with torch.distributed: 2 processes (gloo, CPU) against one with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dialog_env
from agents.checkpoints import load_checkpoint
from agents.distributed import SINGLE_PROCESS, DialogShard, GlobalBatchNorm1d
from dialog_env.dynamics import uniform_except
from dialog_env.errors import ConfigurationError
from dialog_env.runs import RunFolder

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
#: The README's tolerance: weights of a 2-process run within this of the 1-process run's (plain SGD).
SGD_WEIGHT_TOLERANCE = 1e-5
TINY = ["--pretrain-iterations", "4", "--improve-iterations", "2", "--batch-size", "8", "--train-turns", "3",
        "--max-turns", "4", "--eval-episodes", "40", "--checkpoint-every", "2", "--no-progress", "--seed", "3",
        "--torch-threads", "1"]  # fmt: skip


def _environment() -> dict[str, str]:
    """The test's environment for a child process, without a torchrun job's variables, the project importable."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    environment = {key: value for key, value in os.environ.items() if key not in names}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"
    return environment


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd,
                          env=_environment())  # fmt: skip


def _torchrun(*args: str, cwd: Path, processes: int = 2) -> subprocess.CompletedProcess:
    return _python("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args, cwd=cwd)


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    catalog = dialog_env.make_synthetic_shoes(num_train=200, num_test=80, dim=16, seed=3)
    return str(catalog.save(tmp_path_factory.mktemp("catalog") / "small.h5"))


# ---------------------------------------------------------------------------- the shard's arithmetic
def test_each_process_draws_its_rows_of_the_whole_batch():
    whole = uniform_except(np.random.default_rng(4), 50, np.arange(8)[:, None], size=(8, 5))
    targets = np.arange(8)[:, None]
    parts = [
        uniform_except(np.random.default_rng(4), 50, targets[shard.rows(8)], size=(8, 5), rows=shard.rows(8))
        for shard in (DialogShard(0, 2), DialogShard(1, 2))
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.any(whole == targets)


def test_shard_rows_and_refusals():
    assert DialogShard(1, 4).rows(8) == slice(2, 4) and DialogShard(0, 1).rows(8) == slice(0, 8)
    assert SINGLE_PROCESS.is_main and not SINGLE_PROCESS.distributed and not DialogShard(1, 2).is_main
    with pytest.raises(ConfigurationError, match="multiple of the number of processes"):
        DialogShard(0, 3).local_batch(8)
    with pytest.raises(ConfigurationError, match="rank"):
        DialogShard(2, 2)
    # One process: sums are the values themselves, and nothing is wrapped.
    np.testing.assert_array_equal(SINGLE_PROCESS.sum(np.array([1, 2])), [1.0, 2.0])
    module = torch.nn.Linear(2, 2)
    assert SINGLE_PROCESS.data_parallel(module) is module


def test_single_process_batch_norm_is_left_alone():
    norm = torch.nn.BatchNorm1d(3)
    SINGLE_PROCESS.data_parallel(torch.nn.Sequential(norm, torch.nn.Linear(3, 1)))
    assert type(norm) is torch.nn.BatchNorm1d
    # Outside a job the global version is BatchNorm1d itself.
    inputs = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    plain, global_ = torch.nn.BatchNorm1d(3), GlobalBatchNorm1d(3)
    torch.testing.assert_close(global_(inputs), plain(inputs))
    torch.testing.assert_close(global_.running_var, plain.running_var)


# ---------------------------------------------------------------------------- gradients
def test_two_processes_take_the_one_process_sgd_steps(tmp_path):
    """Both stages, plain SGD: the averaged gradients (global batch norm included) are the one-process gradients."""
    worker = str(ROOT / "tests" / "distributed_worker.py")
    alone = _python(worker, str(tmp_path / "one.npz"), cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    pair = _torchrun(worker, str(tmp_path / "two.npz"), cwd=tmp_path)
    assert pair.returncode == 0, pair.stdout + pair.stderr
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(one.files) == sorted(two.files) and len(one["_losses"]) == 3
    np.testing.assert_allclose(two["_losses"], one["_losses"], rtol=1e-6)
    np.testing.assert_allclose(two["_gains"], one["_gains"], rtol=1e-9)
    weights = [key for key in one.files if not key.startswith("_")]
    assert "text_norm.running_mean" in weights
    for key in weights:
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=SGD_WEIGHT_TOLERANCE, err_msg=key)
    moved = np.abs(one["query_head.weight"] - two["query_head.weight"]).max()
    assert moved < SGD_WEIGHT_TOLERANCE


# ---------------------------------------------------------------------------- train_agent.py under torchrun
def _run_pair(tmp_path: Path, catalog_file: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    common = ["--catalog", catalog_file, "--runs-dir", str(tmp_path), *TINY]
    alone = _python(str(ROOT / "train_agent.py"), *common, "--run-name", "one", cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    pair = _torchrun(str(ROOT / "train_agent.py"), *common, "--run-name", "two", cwd=tmp_path)
    assert pair.returncode == 0, pair.stdout + pair.stderr
    return tmp_path / "one", tmp_path / "two", pair


#: The furthest Adam can take one weight in TINY's training: each step moves a weight by at most
#: about its learning rate, whatever its gradient (4 stage-1 steps at 1e-3, 2 stage-2 steps at 1e-4).
ADAM_REACH = 4 * 1e-3 + 2 * 1e-4


def _weights_close(first: Path, second: Path) -> None:
    """All but 0.1% of each tensor's weights within 1e-4, and none further apart than Adam's reach.

    Adam divides a gradient by its running scale, so a weight whose gradient is zero up to float
    rounding (the bigram filter's bias, followed by max-pooling and batch normalisation, which
    remove it; here and there one weight of a linear layer) takes steps of up to the learning
    rate in directions the rounding decides: those few may differ by up to :data:`ADAM_REACH`
    (and the batch-norm statistics that follow the bias by 1e-2). Averaged gradients that were
    wrong would move most weights.
    """
    one, two = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    assert one.keys() == two.keys()
    for key in one:
        if key in ("bigram_conv.bias", "text_norm.running_mean"):
            torch.testing.assert_close(two[key].float(), one[key].float(), rtol=0, atol=1e-2, msg=key)
            continue
        gap = (two[key].float() - one[key].float()).abs()
        assert gap.max().item() <= ADAM_REACH, (key, gap.max().item())
        assert (gap > 1e-4).float().mean().item() <= 1e-3, (key, int((gap > 1e-4).sum()), gap.numel())


def test_torchrun_trains_as_one_process_with_the_same_global_batch(tmp_path, catalog_file):
    one, two, pair = _run_pair(tmp_path, catalog_file)
    first, second = json.loads((one / "metrics.json").read_text()), json.loads((two / "metrics.json").read_text())
    # The same interaction budget, and on these episodes the same evaluation, turn by turn.
    assert second["results"] == first["results"]
    assert second["results"]["paper-stage2"]["interaction_budget"]["simulator_calls"] == 4 * 32 + 2 * 128
    for name in ("stage1.pt", "final.pt"):
        _weights_close(one / "checkpoints" / name, two / "checkpoints" / name)
    config = json.loads((two / "config.json").read_text())
    assert config["world_size"] == 2 and config["command"].startswith("torchrun --nproc_per_node=2 train_agent.py")
    # Process 0 alone prints and writes.
    assert pair.stdout.count("run two: agent=paper") == 1 and "processes=2" in pair.stdout
    assert pair.stdout.count("paper-stage2: per-turn results") == 1
    assert len(list((two / "tensorboard").iterdir())) == 1


def test_torchrun_resumes_and_extends_a_run(tmp_path, catalog_file):
    common = ["--catalog", catalog_file, "--runs-dir", str(tmp_path), *TINY]
    shorter = list(common)
    shorter[shorter.index("--improve-iterations") + 1] = "1"
    first = _torchrun(str(ROOT / "train_agent.py"), *shorter, "--run-name", "grown", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    resumed = _torchrun(str(ROOT / "train_agent.py"), *common, "--run-name", "grown", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout and "stage done, iteration 1" in resumed.stdout
    alone = _python(str(ROOT / "train_agent.py"), *common, "--run-name", "alone", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    grown = json.loads((tmp_path / "grown" / "metrics.json").read_text())["results"]
    assert grown == json.loads((tmp_path / "alone" / "metrics.json").read_text())["results"]
    _weights_close(tmp_path / "alone" / "checkpoints" / "final.pt", tmp_path / "grown" / "checkpoints" / "final.pt")


def test_a_process_that_cannot_start_stops_the_job(tmp_path, catalog_file):
    """Process 0 cannot lock the run folder: both processes exit with errors instead of waiting for each other."""
    common = ["--catalog", catalog_file, "--runs-dir", str(tmp_path), *TINY, "--run-name", "busy"]
    with RunFolder(tmp_path / "busy", "a test"):
        pair = _torchrun(str(ROOT / "train_agent.py"), *common, cwd=tmp_path)
    assert pair.returncode != 0
    assert "is in use by" in pair.stderr, pair.stderr
    assert "another process of this 2-process torchrun job failed to start" in pair.stderr
    assert not (tmp_path / "busy" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agent", "ppo"], "trains the paper's agent only"),
        (["--batch-size", "9"], "must be a multiple of the 2 torchrun processes"),
    ],
)
def test_torchrun_refuses_what_it_cannot_split(monkeypatch, extra, message):
    import train_agent

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigurationError, match=message):
        train_agent.validate_args(train_agent.Args(**{k.lstrip("-").replace("-", "_"): _value(v) for k, v in
                                                      zip(extra[::2], extra[1::2])}))  # fmt: skip


def _value(text: str) -> object:
    return int(text) if text.isdigit() else text
