"""Run folders: one writer at a time, safe names, no leftovers from refused starts, resume refuses changed arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dialog_env
import train_agent
from dialog_env.errors import ConfigurationError
from dialog_env.runs import OWNER_NAME, RunFolder, check_folder_name

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180
TINY = ["--pretrain-iterations", "4", "--improve-iterations", "2", "--batch-size", "4", "--train-turns", "2",
        "--max-turns", "2", "--eval-episodes", "10", "--no-progress", "--no-eval-random",
        "--torch-threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    catalog = dialog_env.make_synthetic_shoes(num_train=120, num_test=40, dim=16, seed=3)
    return str(catalog.save(tmp_path_factory.mktemp("catalog") / "small.h5"))


def _command(script: str, *arguments: str) -> list[str]:
    return [sys.executable, str(ROOT / script), *arguments]


def _start(log: Path, command: list[str], cwd: Path) -> subprocess.Popen:
    with open(log, "w") as handle:  # a file, not a pipe: a full pipe would stall the run
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)


def _wait_for_owner(folder: Path, process: subprocess.Popen, log: Path) -> dict:
    """Wait until ``process`` holds ``folder`` (its owner file names it)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        assert process.poll() is None, f"the first run ended before the second started:\n{log.read_text()}"
        assert time.monotonic() < deadline, "the first run never locked its folder"
        try:
            owner = json.loads((folder / OWNER_NAME).read_text())
            if owner["pid"] == process.pid:
                return owner
        except (OSError, ValueError):
            pass
        time.sleep(0.02)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT_S)


def test_a_second_train_agent_in_a_live_run_folder_fails_at_once(tmp_path, catalog_file):
    common = [
        "--catalog",
        catalog_file,
        "--runs-dir",
        str(tmp_path),
        "--run-name",
        "shared",
        *TINY,
        "--checkpoint-every",
        "1",
    ]
    first_log = tmp_path / "first.log"
    # Long enough to still run while the second command starts; every iteration writes a temporary checkpoint.
    first = _start(first_log, _command("train_agent.py", *common, "--pretrain-iterations", "100000"), tmp_path)
    try:
        _wait_for_owner(tmp_path / "shared", first, first_log)
        for extra in (["--seed", "2"], ["--resume"]):  # another seed into the same folder; a second resume of it
            started = time.monotonic()
            second = _run(_command("train_agent.py", *common, *extra), tmp_path)
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"is in use by process {first.pid}" in second.stderr, second.stderr
            assert "train_agent.py" in second.stderr and "Traceback" not in second.stderr
            assert time.monotonic() - started < 60
        assert first.poll() is None, f"the first run was disturbed:\n{first_log.read_text()}"
        assert (tmp_path / "shared" / "checkpoints" / "last.pt").exists()
    finally:
        first.kill()
        first.wait(timeout=60)
    # The lock died with its process (kill -9 included): the folder can be taken again.
    with RunFolder(tmp_path / "shared"):
        assert json.loads((tmp_path / "shared" / OWNER_NAME).read_text())["pid"] != first.pid


def test_a_second_train_captioner_into_a_live_output_fails_at_once(tmp_path, catalog_file):
    output = tmp_path / "captioner"
    common = [
        "--catalog",
        catalog_file,
        "--output",
        str(output),
        "--embed-dim",
        "8",
        "--hidden-dim",
        "8",
        "--no-progress",
    ]
    first_log = tmp_path / "first.log"
    first = _start(first_log, _command("train_captioner.py", *common, "--pairs", "400", "--epochs", "100000"), tmp_path)
    try:
        _wait_for_owner(output, first, first_log)
        second = _run(
            _command("train_captioner.py", *common, "--pairs", "50", "--epochs", "1", "--overwrite"), tmp_path
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"is in use by process {first.pid}" in second.stderr and "train_captioner.py" in second.stderr
        assert first.poll() is None, f"the first run was disturbed:\n{first_log.read_text()}"
    finally:
        first.kill()
        first.wait(timeout=60)


@pytest.mark.parametrize("name", ["a/b", "..", ".", "/tmp/elsewhere", "", "../outside"])
def test_run_name_is_one_folder_name(tmp_path, name):
    with pytest.raises(ConfigurationError, match="--run-name must be one folder name"):
        check_folder_name(name)
    with pytest.raises(SystemExit) as exit_code:
        train_agent.parse_args(["--run-name", name, "--runs-dir", str(tmp_path / "runs")])
    assert exit_code.value.code == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(resume=True), "--resume: no checkpoint"),
        (dict(catalog="missing.h5"), "does not exist"),
        (dict(user="relative-attribute", catalog="__no_attributes__"), "relative-attribute"),
    ],
    ids=["resume without a checkpoint", "missing catalogue", "user that does not fit the catalogue"],
)
def test_a_refused_start_leaves_no_run_folder(tmp_path, arguments, message):
    if arguments.get("catalog") == "__no_attributes__":
        full = dialog_env.make_synthetic_shoes(num_train=20, num_test=10, dim=8, seed=1)
        bare = dialog_env.Catalog(full.features, full.ids, full.splits, name="bare")
        arguments = {**arguments, "catalog": str(bare.save(tmp_path / "bare.h5"))}
    elif "catalog" in arguments:
        arguments = {**arguments, "catalog": str(tmp_path / arguments["catalog"])}
    args = train_agent.Args(
        run_name="refused", runs_dir=str(tmp_path / "runs"), eval_episodes=5, progress=False, **arguments
    )
    with pytest.raises(dialog_env.DialogEnvError, match=message):
        train_agent.run(args)
    assert not (tmp_path / "runs" / "refused").exists()


def test_files_as_folders_are_refused(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ConfigurationError, match="--runs-dir .*notes.txt.* is a file, expected a folder"):
        train_agent.validate_args(train_agent.Args(runs_dir=str(a_file)))
    with pytest.raises(ConfigurationError, match="--runs-dir .*is a file"):
        train_agent.validate_args(train_agent.Args(runs_dir=str(a_file / "runs")))
    import train_captioner

    with pytest.raises(SystemExit):
        train_captioner.parse_args(["--output", str(a_file)])


# ---------------------------------------------------------------------------- resume with other arguments
def _train(tmp_path: Path, catalog_file: str, *extra: str) -> int:
    return train_agent.main(
        ["--catalog", catalog_file, "--runs-dir", str(tmp_path), "--run-name", "run", *TINY, *extra]
    )


def test_resume_refuses_changed_training_arguments_and_lists_each(tmp_path, catalog_file, capsys):
    # Stop after stage 1 (no metrics.json yet) by planting an interrupted state: train, then drop the results.
    assert _train(tmp_path, catalog_file) == 0
    (tmp_path / "run" / "metrics.json").unlink()
    capsys.readouterr()
    code = _train(tmp_path, catalog_file, "--resume", "--seed", "7", "--tau", "0.5", "--batch-size", "8",
                  "--user", "relative-attribute")  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    for difference in (
        "--seed: 1 -> 7",
        "--tau: 0.2 -> 0.5",
        "--batch-size: 4 -> 8",
        "--user: 'rule' -> 'relative-attribute'",
    ):
        assert difference in error, error
    assert "--allow-changed-args" in error
    assert not (tmp_path / "run" / "metrics.json").exists()

    # A smaller budget is refused; stage 1 is over, so its budget cannot grow either.
    assert _train(tmp_path, catalog_file, "--resume", "--improve-iterations", "1") == 2
    assert "a budget may grow, not shrink" in capsys.readouterr().err
    assert _train(tmp_path, catalog_file, "--resume", "--pretrain-iterations", "9") == 2
    assert "stage 1 already finished after 4 iterations" in capsys.readouterr().err

    # Spelling of --user-kwargs does not count; device, threads and progress may change.
    assert (
        _train(tmp_path, catalog_file, "--resume", "--user-kwargs", "{ }", "--device", "cpu", "--torch-threads", "2")
        == 0
    )
    assert "is complete" not in capsys.readouterr().out


def test_resume_may_extend_stage_2_of_a_finished_training(tmp_path, catalog_file, capsys):
    assert _train(tmp_path, catalog_file) == 0
    assert _train(tmp_path, catalog_file, "--resume", "--improve-iterations", "5") == 0
    output = capsys.readouterr().out
    assert "resumed from" in output and "stage done, iteration 2" in output
    final = train_agent.load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    assert final["stage"] == "done" and final["iteration"] == 5


def test_allow_changed_args_continues_with_a_warning(tmp_path, catalog_file, capsys):
    assert _train(tmp_path, catalog_file) == 0
    assert _train(tmp_path, catalog_file, "--resume", "--tau", "0.3", "--allow-changed-args") == 0
    assert (
        "warning: resuming with changed arguments (--allow-changed-args): --tau: 0.2 -> 0.3" in capsys.readouterr().err
    )
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["args"]["tau"] == 0.3  # evaluated again


def test_only_the_warning_process_says_that_arguments_changed(capsys):
    previous = {**vars(train_agent.Args()), "tau": 0.2}
    args = train_agent.Args(resume=True, allow_changed_args=True, tau=0.3)
    # Process 1 of a torchrun job (warn=False) lets the change through as process 0 does, silently.
    assert train_agent.refuse_changed_args(args, previous, None, warn=False) == ["--tau: 0.2 -> 0.3"]
    assert capsys.readouterr().err == ""
    assert train_agent.refuse_changed_args(args, previous, None) == ["--tau: 0.2 -> 0.3"]
    assert "--tau: 0.2 -> 0.3" in capsys.readouterr().err
