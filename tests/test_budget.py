"""The interaction budget: every caption of the user simulator is counted, by purpose, for every agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dialog_env
from agents.dialog_manager import DialogManager, DialogManagerConfig, TextEncodingCache
from agents.policy_improvement import rollout_values
from agents.snapshots import SnapshotIndex, check_snapshot_calls, read_snapshot_index
from agents.training import (
    PaperTrainingConfig,
    SB3TrainingConfig,
    paper_iteration_calls,
    prepare_torch,
    read_training_checkpoint,
    train_paper_agent,
    train_sb3_agent,
)
from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker

SMALL = {"num_train": 120, "num_test": 40, "dim": 16, "seed": 3}


@pytest.fixture(scope="module")
def catalog():
    return dialog_env.make_catalog(SMALL)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_dialog_of_t_turns_costs_t_plus_one_captions(catalog):
    env = dialog_env.DialogRetrievalEnv(catalog=catalog, max_turns=4, expose_target=True)
    _, info = env.reset(seed=0)
    assert env.unwrapped.model.budget() == InteractionBudget(dialog_turns=1)
    # Seeded actions that are never the target, so that the dialog lasts all its turns.
    others = [image for image in range(env.catalog.num_images) if image != info["target_index"]]
    for action in others[:3]:
        env.step(action)
    assert env.unwrapped.model.budget().simulator_calls == 4

    envs = dialog_env.DialogRetrievalVectorEnv(num_envs=3, catalog=catalog, max_turns=4)
    envs.reset(seed=0)
    envs.step(np.array([0, 1, 2]))
    assert envs.model.budget() == InteractionBudget(dialog_turns=6, lookahead_calls=0)


def test_ranks_cost_nothing_and_unknown_purposes_are_refused(catalog):
    env = dialog_env.DialogRetrievalVectorEnv(num_envs=2, catalog=catalog)
    model = env.model
    model.ranks(np.array([0, 1]), np.array([2, 3]))
    assert model.budget().simulator_calls == 0
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    model.respond(np.array([0, 1]), np.array([2, 3]), rngs, purpose="lookahead")
    assert model.budget() == InteractionBudget(0, 2)
    with pytest.raises(ConfigurationError, match="purpose"):
        model.respond(np.array([0]), np.array([2]), rngs[:1], purpose="imagined")


def test_lookahead_rollouts_count_b_k_horizon_calls(catalog):
    envs = dialog_env.DialogRetrievalVectorEnv(num_envs=2, catalog=catalog, expose_target=True)
    envs.reset(seed=0)
    model = envs.model
    torch.manual_seed(0)
    base = DialogManager(DialogManagerConfig(image_dim=catalog.dim, vocab_size=len(envs.vocabulary)))
    embeddings = base.embed_images(torch.from_numpy(np.array(envs.catalog.features))).detach().numpy()
    before = model.budget()
    candidates = np.array([[3, 4, 5], [6, 7, 8]])
    rngs = [np.random.default_rng(i) for i in range(6)]
    rollout_values(
        base, model, Ranker(np.ascontiguousarray(embeddings)), base.initial_state(2, "cpu"), candidates,
        np.array([0, 1]), np.array([[9], [10]]), horizon=3, rngs=rngs, text_cache=TextEncodingCache(base),
    )  # fmt: skip
    assert model.budget() - before == InteractionBudget(dialog_turns=0, lookahead_calls=2 * 3 * 3)


def test_budgets_round_trip_and_bad_ones_are_refused():
    budget = InteractionBudget(10, 32)
    assert budget.simulator_calls == 42 and InteractionBudget.from_dict(budget.as_dict()) == budget
    assert "42 simulator calls (10 dialog turns + 32 look-ahead)" == budget.describe()
    assert InteractionBudget.from_dict(None) == InteractionBudget()
    for bad in ({"dialog_turns": -1, "lookahead_calls": 0}, {"dialog_turns": 1}, {"dialog_turns": 1.5},
                {"dialog_turns": 1, "lookahead_calls": 2, "simulator_calls": 4}, [1, 2]):  # fmt: skip
        with pytest.raises(ConfigurationError):
            InteractionBudget.from_dict(bad)
    assert check_snapshot_calls([30, 10, 30]) == (10, 30)
    with pytest.raises(ConfigurationError):
        check_snapshot_calls([0])


def test_paper_budget_is_counted_checkpointed_and_snapshotted(catalog, tmp_path):
    config = PaperTrainingConfig(batch_size=4, pretrain_iterations=3, improve_iterations=2, train_turns=3,
                                 checkpoint_every=1, snapshot_calls=(30, 60, 100))  # fmt: skip
    stage1, stage2 = paper_iteration_calls(config)
    assert (stage1, stage2) == (4 * 4, 4 * 4 + 4 * 4 * 3)
    prepare_torch(0)
    _, results, budget = train_paper_agent(config, {"catalog": catalog}, tmp_path)
    assert budget == InteractionBudget(dialog_turns=5 * stage1, lookahead_calls=2 * (stage2 - stage1))
    assert read_training_checkpoint(tmp_path / "final.pt")["budget"] == budget.as_dict()
    assert results == {}  # no evaluation asked
    index = read_snapshot_index(tmp_path)
    assert sorted(index) == [30, 60, 100]
    # Each snapshot is the model after the first iteration whose budget reached it.
    cumulative = np.cumsum([stage1] * 3 + [stage2] * 2)
    for calls, entry in index.items():
        first = int(np.argmax(cumulative >= calls))
        assert entry["budget"]["simulator_calls"] == cumulative[first]
        expected = ("pretrain", first + 1) if first < 3 else ("improve", first - 2)
        assert (entry["stage"], entry["iteration"]) == expected
        assert read_training_checkpoint(tmp_path / "snapshots" / entry["file"])["budget"] == entry["budget"]


def test_a_resumed_paper_run_keeps_counting_from_its_checkpoint(catalog, tmp_path):
    config = PaperTrainingConfig(batch_size=4, pretrain_iterations=2, improve_iterations=1, train_turns=3)
    prepare_torch(0)
    _, _, whole = train_paper_agent(config, {"catalog": catalog}, tmp_path / "whole")
    prepare_torch(0)
    train_paper_agent(dataclasses_replace(config, improve_iterations=0), {"catalog": catalog}, tmp_path / "part")
    resumed = read_training_checkpoint(tmp_path / "part" / "last.pt")
    _, _, continued = train_paper_agent(config, {"catalog": catalog}, tmp_path / "part", resumed=resumed)
    assert continued == whole


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def _sb3_config(agent="ppo", **overrides):
    settings = {"seed": 0, "train_turns": 3, "total_timesteps": 256, "n_envs": 4,
                "hyperparameters": {"n_steps": 16, "batch_size": 32}}  # fmt: skip
    settings.update(overrides)
    return SB3TrainingConfig(agent, **settings)


def test_sb3_training_stops_at_its_budget_and_writes_it(catalog, tmp_path):
    pytest.importorskip("stable_baselines3")
    config = _sb3_config(budget_calls=100, snapshot_calls=(50,), checkpoint_every_steps=0)
    agent, budget = train_sb3_agent(config, {"catalog": catalog}, tmp_path / "final.zip", tensorboard_log=tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "ppo_1"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("budget/simulator_calls")]
    assert logged and logged[-1][1] <= budget.simulator_calls and all(v > s for s, v in logged)  # calls > steps
    # 4 dialogs per vector step: 4 captions at the first reset, 4 per step, 4 more per dialog restart.
    assert 100 <= budget.simulator_calls < 100 + 8 and budget.lookahead_calls == 0
    state = json.loads((tmp_path / "final.json").read_text())
    assert state["budget"] == budget.as_dict() and state["stopped_by"] == "budget"
    assert state["timesteps"] == agent.model.num_timesteps < 100
    entry = read_snapshot_index(tmp_path)[50]
    assert 50 <= entry["budget"]["simulator_calls"] < 58 and (tmp_path / "snapshots" / entry["file"]).is_file()
    _, again = train_sb3_agent(config, {"catalog": catalog}, tmp_path / "final.zip", resume=True)
    assert again == budget  # a finished run is loaded, not trained again


def test_sb3_training_resumes_from_its_mid_run_checkpoint(catalog, tmp_path):
    pytest.importorskip("stable_baselines3")
    stops = iter([False] * 20 + [True])
    from agents.training import TrainingHooks, TrainingInterrupted

    hooks = TrainingHooks(stop_requested=lambda: next(stops, False))
    config = _sb3_config(total_timesteps=192, checkpoint_every_steps=64)
    with pytest.raises(TrainingInterrupted):
        train_sb3_agent(config, {"catalog": catalog}, tmp_path / "final.zip", hooks=hooks)
    state = json.loads((tmp_path / "last.json").read_text())
    # Stopped at step 84, inside the second rollout of 64 steps: resumed at that rollout's start.
    assert state["timesteps"] == 64 and not (tmp_path / "final.zip").exists()
    assert state["budget"]["simulator_calls"] >= 84
    agent, budget = train_sb3_agent(config, {"catalog": catalog}, tmp_path / "final.zip", resume=True)
    assert agent.model.num_timesteps == 192
    assert budget.simulator_calls > state["budget"]["simulator_calls"]


def test_dqn_replay_buffer_survives_a_checkpoint_without_pickles(catalog, tmp_path):
    pytest.importorskip("stable_baselines3")
    from agents.sb3 import make_model, make_training_env
    from agents.sb3_checkpoints import load_replay_buffer, save_replay_buffer

    env = make_training_env("dqn", {"catalog": catalog}, n_envs=2, max_turns=3)
    model = make_model("dqn", env, buffer_size=200, learning_starts=50)
    model.learn(80)
    save_replay_buffer(model.replay_buffer, tmp_path / "replay.npz")
    fresh = make_model("dqn", env, buffer_size=200, learning_starts=50)
    load_replay_buffer(fresh.replay_buffer, tmp_path / "replay.npz")
    for side in ("observations", "next_observations"):
        for key, array in getattr(model.replay_buffer, side).items():
            np.testing.assert_array_equal(getattr(fresh.replay_buffer, side)[key], array)
    np.testing.assert_array_equal(fresh.replay_buffer.actions, model.replay_buffer.actions)
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (model.replay_buffer.pos, model.replay_buffer.full)
    smaller = make_model("dqn", env, buffer_size=100, learning_starts=50)
    with pytest.raises(ConfigurationError, match="buffer needs"):
        load_replay_buffer(smaller.replay_buffer, tmp_path / "replay.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigurationError, match="not readable"):
        load_replay_buffer(fresh.replay_buffer, tmp_path / "bad.npz")


def test_snapshot_index_refuses_paths_outside_its_folder(tmp_path):
    index = SnapshotIndex(tmp_path, (10,), ".pt")
    index.record(10, InteractionBudget(12, 0), iteration=1)
    assert read_snapshot_index(tmp_path)[10]["file"] == "calls-10.pt"
    (tmp_path / "snapshots" / "index.json").write_text(
        json.dumps({"snapshots": {"10": {"file": "../../etc/passwd",
                                         "budget": {"dialog_turns": 1, "lookahead_calls": 0}}}})
    )
    with pytest.raises(ConfigurationError, match="names no file"):
        read_snapshot_index(tmp_path)
