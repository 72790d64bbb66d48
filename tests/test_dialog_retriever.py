"""The dialog retriever: its belief, the agent protocol, training, checkpoints, train_agent.py and its benchmark."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import dialog_env
import train_agent
from agents.checkpoints import load_dialog_manager, load_dialog_retriever, load_paper_run
from agents.dialog_retriever import (
    Belief,
    DialogRetriever,
    DialogRetrieverAgent,
    DialogRetrieverConfig,
    train_retriever,
    turn_scores,
    turn_scores_per_dialog,
)
from agents.evaluation import EpisodeSet, evaluate, metric_values, summarize
from agents.training import (
    RetrieverTrainingConfig,
    prepare_torch,
    read_training_checkpoint,
    retriever_iteration_calls,
    train_retriever_agent,
)
from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 200, "num_test": 80, "dim": 16, "seed": 3}


@pytest.fixture(scope="module")
def catalog():
    return dialog_env.make_synthetic_shoes(**SMALL)


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory, catalog):
    return str(catalog.save(tmp_path_factory.mktemp("catalog") / "small.h5"))


def _envs(catalog, batch=16, turns=4):
    return gym.make_vec("DialogRetrieval-v0", num_envs=batch, catalog=catalog, max_turns=turns, expose_target=True,
                        vectorization_mode="vector_entry_point").unwrapped  # fmt: skip


def _model(envs, seed=0, **sizes):
    torch.manual_seed(seed)
    return DialogRetriever(DialogRetrieverConfig(image_dim=envs.catalog.dim, vocab_size=len(envs.vocabulary), **sizes))


def test_the_belief_sums_every_turn_and_never_shows_an_image_twice():
    torch.manual_seed(0)
    embeddings = torch.randn(50, 8)
    belief = Belief(embeddings, num_dialogs=3, block_rows=7)  # several blocks
    turns = [(torch.randn(3, 4, 8), torch.randn(3, 4), torch.randint(0, 50, (3,))) for _ in range(5)]
    shown = set()
    for directions, offsets, shown_index in turns:
        belief.update(directions, offsets, shown_index)
        shown |= {(d, int(i)) for d, i in enumerate(shown_index)}
        for selection in ("greedy", "split"):
            picked = belief.select(selection)
            assert all((d, int(i)) not in shown for d, i in enumerate(picked))
    expected = sum(turn_scores(d, o, embeddings) for d, o, _ in turns)
    torch.testing.assert_close(belief.scores, expected, rtol=1e-5, atol=1e-4)
    # The greedy pick is the best-scoring unseen image.
    masked = expected.clone()
    for d, i in shown:
        masked[d, i] = float("-inf")
    assert belief.select("greedy").tolist() == masked.argmax(dim=1).tolist()
    # Ranks: images scored strictly above the target, against brute force.
    targets = torch.tensor([0, 17, 49])
    brute = [(expected[d] > expected[d, t]).sum().item() for d, t in enumerate(targets.tolist())]
    assert belief.target_ranks(targets).tolist() == brute
    # The hardest negatives are the best-scoring images other than the target.
    hard = belief.hardest(targets, 5)
    assert not (hard == targets[:, None]).any()
    scores = belief.scores.gather(1, hard)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_the_last_turn_belief_forgets_earlier_turns_and_restart_forgets_a_dialog():
    torch.manual_seed(1)
    embeddings = torch.randn(20, 4)
    belief = Belief(embeddings, num_dialogs=2, history="last")
    first = (torch.randn(2, 3, 4), torch.randn(2, 3))
    second = (torch.randn(2, 3, 4), torch.randn(2, 3))
    belief.update(*first, torch.tensor([0, 1]))
    belief.update(*second, torch.tensor([2, 3]))
    torch.testing.assert_close(belief.scores, turn_scores(*second, embeddings))
    belief.restart(torch.tensor([True, False]))
    assert (belief.scores[0] == 0).all() and not belief.shown[0].any()
    assert belief.shown[1, [1, 3]].all()
    with pytest.raises(ConfigurationError, match="history"):
        Belief(embeddings, 2, history="some")
    with pytest.raises(ConfigurationError, match="selection"):
        belief.select("best")


def test_scores_per_dialog_agree_with_shared_candidates():
    torch.manual_seed(2)
    directions, offsets, embeddings = torch.randn(3, 2, 5), torch.randn(3, 2), torch.randn(6, 5)
    shared = turn_scores(directions, offsets, embeddings)
    own = turn_scores_per_dialog(directions, offsets, embeddings.expand(3, 6, 5))
    torch.testing.assert_close(shared, own)


def test_the_agent_plays_the_protocol_and_a_dialog_does_not_depend_on_its_batch(catalog):
    envs = _envs(catalog)
    model = _model(envs)
    episodes = EpisodeSet.draw(catalog.select("test").num_images, 12, seed=5)
    agent = DialogRetrieverAgent(model)
    result = evaluate(agent, episodes, {"catalog": catalog, "split": "test"}, max_turns=4, seed=5)
    assert result.ranking_rank is not None and result.ranking_rank.shape == (12, 4)
    assert ((result.ranking_percentile >= 0) & (result.ranking_percentile <= 1)).all()
    # Dialogs played four at a time show the same images as twelve at once.
    in_fours = evaluate(DialogRetrieverAgent(model), episodes, {"catalog": catalog, "split": "test"}, max_turns=4,
                        batch_size=4, seed=5)  # fmt: skip
    assert np.array_equal(in_fours.shown_percentile, result.shown_percentile)
    assert np.array_equal(in_fours.ranking_rank, result.ranking_rank)
    with pytest.raises(ConfigurationError, match="before reset"):
        DialogRetrieverAgent(model).act({"turn": np.zeros((1, 1))}, {})
    with pytest.raises(ConfigurationError, match="16-d features"):
        other = dialog_env.make_synthetic_shoes(num_train=20, num_test=10, dim=8, seed=1)
        DialogRetrieverAgent(model).reset(other.select("test"), 2)
    with pytest.raises(ConfigurationError, match="selection"):
        DialogRetrieverAgent(model, selection="best")


def test_training_learns_on_a_small_catalogue_with_either_loss(catalog):
    torch.set_num_threads(1)
    episodes = EpisodeSet.draw(catalog.select("test").num_images, 60, seed=9)
    env_kwargs = {"catalog": catalog, "split": "test"}
    untrained = metric_values(evaluate(DialogRetrieverAgent(_model(_envs(catalog))), episodes, env_kwargs, 5, seed=9))
    for loss in ("contrastive", "triplet"):
        envs = _envs(catalog, batch=32)
        model = _model(envs)
        losses = []
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        train_retriever(model, envs, 60, optimizer, seed=1, loss=loss, hard_negatives=16,
                        on_iteration=lambda i, m, kept=losses: kept.append(m["loss"]))  # fmt: skip
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
        trained = metric_values(evaluate(DialogRetrieverAgent(model), episodes, env_kwargs, 5, seed=9))
        # The target climbs the agent's ranking well above the untrained model's by turn 5.
        assert trained["ranking_percentile"][:, 4].mean() > untrained["ranking_percentile"][:, 4].mean() + 0.1
    with pytest.raises(ConfigurationError, match="loss"):
        train_retriever(model, envs, 1, optimizer, seed=1, loss="hinge")


def test_training_counts_its_budget_and_a_resumed_run_reaches_the_same_weights(catalog, tmp_path):
    config = RetrieverTrainingConfig(batch_size=8, train_turns=3, retriever_iterations=4, checkpoint_every=2,
                                     snapshot_calls=(40,))  # fmt: skip
    prepare_torch(0, threads=1)
    whole, budget = train_retriever_agent(config, {"catalog": catalog}, tmp_path / "whole")
    assert budget == InteractionBudget(dialog_turns=4 * retriever_iteration_calls(config), lookahead_calls=0)
    assert retriever_iteration_calls(config) == 8 * 4
    final = read_training_checkpoint(tmp_path / "whole" / "final.pt")
    assert final["stage"] == "done" and final["iteration"] == 4 and final["budget"] == budget.as_dict()
    assert (tmp_path / "whole" / "snapshots").is_dir()
    prepare_torch(0, threads=1)
    train_retriever_agent(dataclasses.replace(config, retriever_iterations=2), {"catalog": catalog}, tmp_path / "part")
    resumed = read_training_checkpoint(tmp_path / "part" / "last.pt")
    assert resumed["iteration"] == 2
    continued, again = train_retriever_agent(config, {"catalog": catalog}, tmp_path / "part", resumed=resumed)
    assert again == budget
    for (name, a), b in zip(whole.state_dict().items(), continued.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The files are the retriever's, and the paper's loader says so (and vice versa).
    model = load_dialog_retriever(tmp_path / "whole" / "final.pt", catalog.dim)
    assert model.config.image_dim == catalog.dim
    with pytest.raises(ConfigurationError, match="DialogManagerConfig"):
        load_dialog_manager(tmp_path / "whole" / "final.pt")


def test_train_agent_trains_resumes_and_validates_the_dialog_retriever(tmp_path, catalog_file):
    common = ["--agent", "dialog-retriever", "--catalog", catalog_file, "--runs-dir", str(tmp_path), "--run-name",
              "r", "--batch-size", "8", "--train-turns", "3", "--eval-episodes", "20", "--max-turns", "4",
              "--no-progress", "--no-eval-random", "--checkpoint-every", "1"]  # fmt: skip
    first = _run([*common, "--retriever-iterations", "2"])
    assert first.returncode == 0, first.stdout + first.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert set(metrics["results"]) == {"dialog-retriever"}
    assert metrics["results"]["dialog-retriever"]["interaction_budget"]["simulator_calls"] == 2 * 8 * 4
    again = _run([*common, "--retriever-iterations", "2", "--resume"])
    assert again.returncode == 0 and "is complete" in again.stdout
    longer = _run([*common, "--retriever-iterations", "3", "--resume"])
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert "resumed from" in longer.stdout
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["results"]["dialog-retriever"]["interaction_budget"]["simulator_calls"] == 3 * 8 * 4
    # The run's agent, as the play page and the renderer load it, is the one train_agent.py evaluated.
    loaded = load_paper_run(tmp_path / "r")
    assert isinstance(loaded["agent"], DialogRetrieverAgent) and loaded["split"] == "test"
    episodes = EpisodeSet.draw(loaded["catalog"].select("test").num_images, 20, 2018)
    env_kwargs = {"catalog": catalog_file, "split": "test", "user": "rule"}
    again_summary = summarize(evaluate(loaded["agent"], episodes, env_kwargs, max_turns=4, seed=2018), seed=2018)
    expected = dict(metrics["results"]["dialog-retriever"])
    del expected["interaction_budget"]
    assert json.loads(json.dumps(again_summary)) == {**expected, "agent": again_summary["agent"]}
    changed = _run([*common, "--retriever-iterations", "3", "--resume", "--retriever-loss", "triplet"])
    assert changed.returncode == 2 and "--retriever-loss" in changed.stderr
    with pytest.raises(SystemExit):
        train_agent.parse_args(["--agent", "dialog-retriever", "--retriever-selection", "best"])
    with pytest.raises(ConfigurationError, match="apply to the dialog retriever"):
        train_agent.validate_args(train_agent.Args(agent="paper", retriever_iterations=5))


def test_the_benchmark_runs_quick_and_reports_paired_ablations(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dialog_retriever.py"), "--quick", "--runs-dir", str(tmp_path),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "dialog_retriever.json").read_text())
    assert list(report["variants"]) == ["full", "last-turn", "triplet", "split"]
    for name, row in report["variants"].items():
        cell = row["success@turn10"]
        assert 0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1
        assert ("success@turn10_minus_full" in row) == (name != "full")
        assert all(b["simulator_calls"] == 3 * 8 * 4 for b in row["interaction_budget"])
    assert "Ablations" in (tmp_path / "dialog_retriever.md").read_text()


def _run(args):
    return subprocess.run([sys.executable, str(ROOT / "train_agent.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)  # fmt: skip
