"""The learning-curves benchmark: equal budgets, snapshots evaluated on the same episodes, parts, rliable."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import learning_curves  # noqa: E402

pytest.importorskip("rliable")
pytest.importorskip("stable_baselines3")


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory):
    from dialog_env.synthetic import make_synthetic_shoes

    path = tmp_path_factory.mktemp("catalog") / "small.h5"
    make_synthetic_shoes(num_train=150, num_test=50, dim=16, seed=5).save(path)
    return str(path)


def _command(tmp_path, catalog_file, *extra):
    return [sys.executable, str(ROOT / "benchmarks" / "learning_curves.py"), "--agents", "paper", "ppo",
            "--seeds", "1", "2", "--max-calls", "1200", "--checkpoints", "400", "1200", "--tracks", "1200",
            "--pretrain-iterations", "4", "--batch-size", "8", "--n-envs", "4", "--eval-episodes", "24",
            "--catalog", catalog_file, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--bootstrap-reps", "200", *extra]  # fmt: skip


def _run(command, cwd):
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_curves_in_parts_then_complete_then_reused(tmp_path, catalog_file):
    # A part with (almost) no time: nothing trains, the command says so and exits with status 3.
    part = _run(_command(tmp_path, catalog_file, "--part-minutes", "0.00001"), tmp_path)
    assert part.returncode == learning_curves.EXIT_PART_DONE, part.stdout[-2000:] + part.stderr[-2000:]
    assert "run the same command again" in part.stderr
    assert json.loads((tmp_path / "out" / "learning_curves.json").read_text())["complete"] is False

    whole = _run(_command(tmp_path, catalog_file), tmp_path)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "learning_curves.json").read_text())
    assert report["complete"] is True and set(report["agents"]) == {"paper", "ppo"}
    for points in report["agents"].values():
        assert [p["calls"] for p in points] == [400, 1200]
        for point in points:
            # Each snapshot spent at least its budget, by less than one iteration (a stage-2 iteration of
            # 8 dialogs of 5 turns: 8 x 6 + 8 x 4 x 10 calls) or vector step.
            assert all(point["calls"] <= spent < point["calls"] + 8 * 6 + 8 * 4 * 10 for spent in point["spent"])
            success = point["success@10"]
            assert len(success["per_seed"]) == 2
            assert success["mean"] == pytest.approx(np.mean(success["per_seed"]))
            assert success["mean_ci"][0] <= success["mean"] <= success["mean_ci"][1]
    assert report["agents"]["paper"][-1]["lookahead_calls"][0] > 0  # stage 2 looked ahead
    assert report["agents"]["ppo"][-1]["lookahead_calls"] == [0, 0]
    assert "ranking_percentile@5" in report["agents"]["paper"][0] and "ranking_percentile@5" not in report[
        "agents"]["ppo"][0]  # fmt: skip
    markdown = (tmp_path / "out" / "learning_curves.md").read_text()
    assert "## Fixed budget: 1,200 simulator calls" in markdown and "| random (no training) |" in markdown
    assert "best generic agent `ppo`" in markdown and report["claim2"][0]["best_generic"] == "ppo"
    assert (tmp_path / "out" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = _run(_command(tmp_path, catalog_file), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained in" not in again.stdout  # finished runs and evaluations are reused
    assert json.loads((tmp_path / "out" / "learning_curves.json").read_text())["agents"] == report["agents"]

    # Another session without the run folders: the report's runs are taken as they are.
    previous = tmp_path / "previous.json"
    previous.write_text((tmp_path / "out" / "learning_curves.json").read_text())
    command = _command(tmp_path, catalog_file, "--previous", str(previous))
    command[command.index("--runs-dir") + 1] = str(tmp_path / "fresh-runs")
    elsewhere = _run(command, tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert "trained in" not in elsewhere.stdout and "taken from" in elsewhere.stdout
    merged = json.loads((tmp_path / "out" / "learning_curves.json").read_text())
    assert merged["agents"] == report["agents"] and len(merged["reused_runs"]) == 4
    # Other settings: nothing matches, so nothing is taken.
    args = learning_curves.Args(agents=["paper", "ppo"], seeds=[1, 2], max_calls=1200, checkpoints=[400, 1200],
                                tracks=[1200], eval_episodes=25, previous=previous)  # fmt: skip
    assert learning_curves.previous_runs(args) == {}


def test_bad_settings_are_refused_before_anything_runs():
    args = learning_curves.Args(agents=["random", "nope"], tracks=[123], max_calls=1000, checkpoints=[500])
    with pytest.raises(Exception, match="not trained") as error:
        learning_curves.check_args(args)
    assert "nope" in str(error.value) and "--tracks [123]" in str(error.value)


def test_the_paper_budget_is_split_between_its_stages():
    args = learning_curves.Args(max_calls=3_000_000)
    config = learning_curves.paper_config(args, seed=1)
    assert (config.pretrain_iterations, config.improve_iterations) == (600, 432)  # 600 x 768 + 432 x 5,888 >= 3M
    inside_stage1 = learning_curves.paper_config(learning_curves.Args(max_calls=250_000), seed=1)
    assert (inside_stage1.pretrain_iterations, inside_stage1.improve_iterations) == (326, 0)


def test_the_dialog_retriever_spends_its_budget_in_iterations_and_has_curves(tmp_path, catalog_file):
    config = learning_curves.retriever_config(learning_curves.Args(max_calls=250_000), seed=1)
    assert config.retriever_iterations == 326  # 326 x 128 x 6 calls >= 250k
    command = _command(tmp_path, catalog_file)
    command[command.index("ppo")] = "dialog-retriever"
    del command[command.index("--seeds") + 2]  # seed 1 only
    finished = _run(command, tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "learning_curves.json").read_text())
    points = report["agents"]["dialog-retriever"]
    assert [p["calls"] for p in points] == [400, 1200]
    for point in points:  # one iteration of 8 dialogs of 5 turns is 48 calls
        assert all(point["calls"] <= spent < point["calls"] + 48 for spent in point["spent"])
        assert point["lookahead_calls"] == [0]
    assert "ranking_percentile@5" in points[0]


def test_rliable_aggregate_matches_the_mean_and_brackets_it():
    result = learning_curves.aggregate([0.2, 0.4, 0.9], reps=500, seed=0)
    assert result["mean"] == pytest.approx(0.5) and result["runs"] == 3
    assert result["mean_ci"][0] <= 0.5 <= result["mean_ci"][1] and result["iqm_ci"][0] <= result["iqm"]
    assert learning_curves.aggregate([0.3], reps=10, seed=0)["mean_ci"] == [0.3, 0.3]


def test_variants_sweep_settings_over_an_agents_own():
    args = learning_curves.Args(agents=["ppo-query@fast", "ppo-query"], max_calls=250_000, tracks=[250_000],
                                variants='{"ppo-query@fast": {"learning_rate": 0.001}}')  # fmt: skip
    learning_curves.check_args(args)
    fast, plain = (learning_curves.sb3_config(args, name, seed=1) for name in args.agents)
    assert fast.agent == plain.agent == "ppo-query"
    assert fast.hyperparameters == {**plain.hyperparameters, "learning_rate": 0.001}
    assert plain.hyperparameters == learning_curves.TUNED["ppo-query"]
    for bad in (["paper@x"], ["ppo-query@missing"]):
        with pytest.raises(Exception, match="variant"):
            learning_curves.check_args(dataclasses.replace(args, agents=bad))
    with pytest.raises(Exception, match="--variants"):
        learning_curves.check_args(dataclasses.replace(args, variants="[1]"))


def _point(mean, half_width):
    value = {"mean": mean, "mean_ci": [mean - half_width, mean + half_width]}
    return {"calls": 100, "success@10": value, "shown_percentile@5": value}


def test_claim2_compares_the_paper_with_the_best_generic_agent_at_each_track():
    args = learning_curves.Args(agents=["paper", "ppo", "a2c"], tracks=[100], checkpoints=[100], max_calls=100)
    agents = {"paper": [_point(0.4, 0.05)], "ppo": [_point(0.1, 0.05)], "a2c": [_point(0.38, 0.05)]}
    (claim,) = learning_curves.judge_claim2(args, agents)
    assert claim["best_generic"] == "a2c" and claim["success@10"]["verdict"] == "inconclusive"
    (claim,) = learning_curves.judge_claim2(args, {**agents, "a2c": [_point(0.2, 0.05)]})
    assert claim["best_generic"] == "a2c" and claim["success@10"]["verdict"] == "supported"
    (claim,) = learning_curves.judge_claim2(args, {**agents, "paper": [_point(0.01, 0.005)]})
    assert claim["success@10"]["verdict"] == "not supported"
    assert "not measured" in learning_curves.judge_claim2(args, {"ppo": agents["ppo"]})[0]["verdict"]
    # Each measure is judged against the best generic agent on that measure.
    query = {**_point(0.0, 0.0), "shown_percentile@5": _point(0.6, 0.01)["shown_percentile@5"]}
    (claim,) = learning_curves.judge_claim2(args, {**agents, "ppo-query": [query], "paper": [_point(0.5, 0.01)]})
    assert claim["best_generic"] == "a2c" and claim["shown_percentile@5"]["generic_agent"] == "ppo-query"
    assert claim["shown_percentile@5"]["verdict"] == "not supported" and claim["success@10"]["verdict"] == "supported"
