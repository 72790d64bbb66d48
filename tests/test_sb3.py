"""Stable-Baselines3 baselines: the features extractor, the QueryAction wrapper, every SB3 agent,
their training environment, their evaluation adapter and train_agent.py's SB3 path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env

import dialog_env
from agents.evaluation import EpisodeSet, evaluate
from agents.sb3 import (
    INDEX_AGENTS,
    QUERY_AGENTS,
    SB3_AGENTS,
    DialogFeaturesExtractor,
    SB3Agent,
    load_model,
    make_model,
    make_training_env,
)
from agents.sb3_vec import NativeDialogVecEnv
from dialog_env import QueryAction
from dialog_env.errors import ConfigurationError, InvalidActionError
from dialog_env.ranking import Ranker
from dialog_env.wrappers import nearest_image

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 60, "num_test": 20, "dim": 8, "seed": 0}
TURNS = 3
# Tiny budgets: updates start within the 256 steps of the smoke tests.
TINY_HYPERPARAMETERS = {
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "a2c": {},
    "dqn": {"learning_starts": 64, "batch_size": 16, "target_update_interval": 64},
    "ppo-query": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "sac-query": {"learning_starts": 64, "batch_size": 16},
    "td3-query": {"learning_starts": 64, "batch_size": 16},
    "maskable-ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "recurrent-ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "recurrent-ppo-query": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def catalog():
    return dialog_env.make_catalog(SMALL)


def _env(**kwargs):
    return dialog_env.DialogRetrievalEnv(catalog=SMALL, max_turns=TURNS, **kwargs)


def _tiny_model(agent, seed=0, timesteps=256):
    env = make_training_env(agent, {"catalog": SMALL}, n_envs=2, seed=seed, max_turns=TURNS)
    model = make_model(agent, env, seed=seed, device="cpu", **TINY_HYPERPARAMETERS[agent])
    model.learn(timesteps)
    return model


# ---------------------------------------------------------------------------- features extractor
def test_extractor_output_size_comes_from_the_spaces(observation_batch):
    env = _env()
    extractor = DialogFeaturesExtractor(env.observation_space, word_dim=8, text_dim=12, image_dim=20)
    assert extractor.features_dim == 12 + 20 + 1
    assert extractor.vocab_size == len(env.vocabulary)
    assert extractor.image_mlp[0].in_features == SMALL["dim"]
    batch = {k: torch.as_tensor(v) for k, v in observation_batch(env, 7).items()}
    features = extractor(batch)
    assert features.shape == (7, 33) and features.dtype == torch.float32
    np.testing.assert_allclose(
        features[:, -1].detach().numpy(), batch["turn"][:, 0].numpy() / TURNS
    )  # turn scaled to [0, 1]

    wider = dialog_env.DialogRetrievalEnv(catalog={**SMALL, "dim": 11}, max_turns=TURNS)
    assert DialogFeaturesExtractor(wider.observation_space).image_mlp[0].in_features == 11


def test_text_encoder_ignores_padding_but_not_words(observation_batch):
    env = _env()
    short_space = env.observation_space
    long_space = spaces.Dict(
        {**short_space.spaces, "feedback": spaces.Box(0, len(env.vocabulary) - 1, (24,), np.int64)}
    )
    torch.manual_seed(0)
    short = DialogFeaturesExtractor(short_space)
    long = DialogFeaturesExtractor(long_space)
    long.load_state_dict(short.state_dict())
    batch = {k: torch.as_tensor(v) for k, v in observation_batch(env, 5).items()}
    padded = dict(batch, feedback=torch.cat([batch["feedback"], torch.zeros(5, 8, dtype=torch.int64)], dim=1))
    assert (batch["feedback"][:, 0] != 0).all()  # real captions
    torch.testing.assert_close(short(batch), long(padded))

    empty = dict(batch, feedback=torch.zeros_like(batch["feedback"]))
    text_dim = short.conv.out_channels
    assert torch.count_nonzero(short(empty)[:, :text_dim]) == 0
    changed = dict(batch, feedback=batch["feedback"].clone())
    changed["feedback"][:, 0] = (changed["feedback"][:, 0] % (len(env.vocabulary) - 1)) + 1
    assert not torch.allclose(short(changed)[:, :text_dim], short(batch)[:, :text_dim])


def test_extractor_rejects_other_observation_spaces():
    with pytest.raises(ConfigurationError, match="keys \\['feedback', 'image', 'turn'\\]"):
        DialogFeaturesExtractor(spaces.Dict({"image": spaces.Box(0, 1, (3,))}))
    with pytest.raises(ConfigurationError, match="kernel_size must be odd"):
        DialogFeaturesExtractor(_env().observation_space, kernel_size=2)


# ---------------------------------------------------------------------------- QueryAction
def test_query_action_shows_the_nearest_image_and_reports_the_query_rank(catalog):
    env = QueryAction(_env())
    features = catalog.select("train").features
    assert env.action_space.shape == (SMALL["dim"],) and env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, features.min(axis=0))
    np.testing.assert_array_equal(env.action_space.high, features.max(axis=0))

    env.action_space.seed(3)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=1)
    assert "query_rank" not in info
    checked = 0
    for _ in range(30):
        target = env.unwrapped._target
        query = env.action_space.sample() if checked % 2 else rng.normal(size=SMALL["dim"]).astype(np.float32) * 3
        observation, _, terminated, truncated, info = env.step(query)
        # Brute force, independently of the Ranker: nearest image and strictly closer images.
        distances = ((features.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1)
        assert info["query_index"] == info["shown_index"] == int(np.argmin(distances))
        np.testing.assert_array_equal(observation["image"], features[info["shown_index"]])
        assert info["query_rank"] == int((distances < distances[target]).sum())
        checked += 1
        if terminated or truncated:
            env.reset()
    assert checked == 30

    _, info = env.reset(seed=2, options={"target": 5, "initial": 9})
    _, reward, terminated, _, info = env.step(features[5])
    assert terminated and info["is_success"] and info["query_rank"] == 0 and info["query_index"] == 5 and reward == 1.0


def test_query_action_rejects_bad_queries_and_other_envs():
    env = QueryAction(_env())
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(8,\)"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(InvalidActionError, match="finite"):
        env.step(np.full(8, np.nan, dtype=np.float32))
    with pytest.raises(ConfigurationError, match="CartPoleEnv"):
        QueryAction(gym.make("CartPole-v1"))


def test_nearest_image_breaks_ties_by_index():
    features = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    ranker = Ranker(features, (features**2).sum(axis=1))
    np.testing.assert_array_equal(nearest_image(ranker, np.array([[1.0, 0.1], [0.4, 0.0], [0.0, 0.5]])), [0, 1, 1])


def test_sb3_check_env_accepts_both_action_views():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice only (e.g. "use a symmetric action box")
        check_env(_env(), warn=True)
        check_env(QueryAction(_env()), warn=True)


# ---------------------------------------------------------------------------- every agent
@pytest.mark.parametrize("agent", SB3_AGENTS)
def test_tiny_learn_save_and_load(agent, tmp_path, observation_batch):
    model = _tiny_model(agent)
    assert model.num_timesteps >= 256
    expected = spaces.Box if agent in QUERY_AGENTS else spaces.Discrete
    assert isinstance(model.action_space, expected)
    assert any(isinstance(module, DialogFeaturesExtractor) for module in model.policy.modules())
    observations = observation_batch(_env(), 6)
    actions, _ = model.predict(observations, deterministic=True)
    assert all(model.action_space.contains(np.asarray(a, dtype=model.action_space.dtype)) for a in actions)
    model.save(tmp_path / "model.zip")
    again, _ = load_model(agent, tmp_path / "model.zip", model.get_env(), device="cpu").predict(
        observations, deterministic=True
    )
    np.testing.assert_array_equal(actions, again)


def test_same_seed_trains_the_same_model():
    first, second = _tiny_model("ppo", seed=4), _tiny_model("ppo", seed=4)
    for a, b in zip(first.policy.parameters(), second.policy.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("agent", ["ppo", "ppo-query"])
def test_training_env_is_the_native_vec_env_seeded_as_dummy_vec_env_was(agent, catalog):
    env = make_training_env(agent, {"catalog": SMALL}, n_envs=3, seed=7, max_turns=TURNS)
    assert isinstance(env, NativeDialogVecEnv)
    assert env.action_kind == ("query" if agent in QUERY_AGENTS else "index")
    train = env.get_attr("catalog")[0]  # what agents.training.train_sb3_agent reads
    assert np.array_equal(train.ids, catalog.select("train").ids)
    observations = env.reset()
    for i in range(3):  # dialog i: seed + i, as DummyVecEnv.seed(seed) seeds environment i
        single, _ = _env().reset(seed=7 + i)
        for key, value in single.items():
            np.testing.assert_array_equal(observations[key][i], value)
    with pytest.raises(ConfigurationError, match="sets 'autoreset_mode' itself"):
        make_training_env("ppo", {"catalog": SMALL, "autoreset_mode": "NextStep"})


def test_make_model_rejects_a_mismatched_action_space_and_unknown_settings():
    plain = make_training_env("ppo", {"catalog": SMALL}, n_envs=1, max_turns=TURNS)
    with pytest.raises(ConfigurationError, match="QueryAction"):
        make_model("sac-query", plain)
    with pytest.raises(ConfigurationError, match="unknown hyper-parameters for 'ppo'"):
        make_model("ppo", plain, n_step=3)
    with pytest.raises(ConfigurationError, match="unknown SB3 agent 'ddpg'"):
        make_training_env("ddpg")


# ---------------------------------------------------------------------------- evaluation adapter
def test_query_agent_acts_and_ranks_with_its_query(catalog):
    model = _tiny_model("ppo-query")
    agent = SB3Agent(model, "ppo-query")
    test = catalog.select("test")
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=4, catalog=SMALL, split="test", max_turns=TURNS,
                        vectorization_mode="vector_entry_point")  # fmt: skip
    observations, infos = envs.reset(
        seed=0, options={"target": np.array([0, 1, 2, 3]), "initial": np.array([4, 5, 6, 7])}
    )
    agent.reset(test, 4)
    shown = agent.act(observations, infos)
    queries, _ = model.predict(observations, deterministic=True)
    distances = ((test.features[None].astype(np.float64) - queries[:, None].astype(np.float64)) ** 2).sum(axis=2)
    np.testing.assert_array_equal(shown, distances.argmin(axis=1))
    targets = np.array([0, 1, 2, 3])
    expected_ranks = (distances < distances[np.arange(4), targets][:, None]).sum(axis=1)
    np.testing.assert_array_equal(agent.rank_targets(targets), expected_ranks)

    result = evaluate(
        agent, EpisodeSet.draw(test.num_images, 12, seed=1), {"catalog": SMALL, "split": "test"}, max_turns=TURNS
    )
    assert result.ranking_percentile is not None and result.ranking_percentile.shape == (12, TURNS)
    assert ((result.shown_percentile >= 0) & (result.shown_percentile <= 1)).all()


def test_index_agent_maps_training_indices_into_the_evaluated_split(catalog, observation_batch):
    model = _tiny_model("dqn")
    train, test = catalog.select("train"), catalog.select("test")
    agent = SB3Agent(model, "dqn", action_catalog=train)
    observations = observation_batch(_env(split="test"), 5)
    indices, _ = model.predict(observations, deterministic=True)

    agent.reset(train, 5)  # the split it was trained on: indices as they are
    np.testing.assert_array_equal(agent.act(observations, {}), indices)
    agent.reset(test, 5)  # another split: the nearest test image to the chosen training image
    shown = agent.act(observations, {})
    distances = ((test.features[None].astype(np.float64) - train.features[indices][:, None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(shown, distances.argmin(axis=1))
    assert agent.rank_targets(np.arange(5)) is None

    result = evaluate(
        agent, EpisodeSet.draw(test.num_images, 10, seed=2), {"catalog": SMALL, "split": "test"}, max_turns=TURNS
    )
    assert result.ranking_percentile is None and result.success.shape == (10, TURNS)
    with pytest.raises(ConfigurationError, match="action_catalog has 20 images"):
        SB3Agent(model, "dqn", action_catalog=test)
    with pytest.raises(ConfigurationError, match="needs action_catalog"):
        SB3Agent(model, "dqn")


# ---------------------------------------------------------------------------- train_agent.py
TINY_RUN = ["--total-timesteps", "256", "--n-envs", "2", "--train-turns", "3", "--max-turns", "3", "--eval-episodes",
            "16",
            "--no-eval-random", "--no-progress", "--seed", "2"]  # fmt: skip


def _train_agent(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "train_agent.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def small_catalog_file(tmp_path_factory, catalog):
    return str(catalog.save(tmp_path_factory.mktemp("catalog") / "small.h5"))


def test_train_agent_trains_and_evaluates_sb3_agents(tmp_path, small_catalog_file):
    common = ["--catalog", small_catalog_file, "--runs-dir", str(tmp_path), *TINY_RUN]
    result = _train_agent(["--agent", "ppo", "--run-name", "ppo", *common], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "ppo"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["results"]) == {"ppo"} and len(metrics["results"]["ppo"]["turns"]) == 3
    assert "ranking_percentile" not in metrics["results"]["ppo"]["turns"][0]
    budget = metrics["results"]["ppo"]["interaction_budget"]
    assert budget["lookahead_calls"] == 0 and budget["simulator_calls"] == budget["dialog_turns"] > 0
    assert (run / "checkpoints" / "final.zip").exists() and (run / "tensorboard" / "ppo_1").is_dir()
    assert "ppo: per-turn results on the test split" in result.stdout

    clash = _train_agent(["--agent", "ppo", "--run-name", "ppo", *common], tmp_path)
    assert clash.returncode == 2 and "--resume" in clash.stderr
    resumed = _train_agent(["--agent", "ppo", "--run-name", "ppo", "--resume", *common], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["results"] == metrics["results"]

    query = _train_agent(["--agent", "sac-query", "--run-name", "sac", *common], tmp_path)
    assert query.returncode == 0, query.stdout + query.stderr
    turns = json.loads((tmp_path / "sac" / "metrics.json").read_text())["results"]["sac-query"]["turns"]
    assert {"ranking_percentile", "recall@10", "recall@50"} <= set(turns[0])


def test_train_agent_lists_every_agent_when_one_is_unknown(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        import train_agent
    finally:
        sys.path.remove(str(ROOT))
    assert train_agent.SB3_AGENTS == SB3_AGENTS  # named there so that other agents run without SB3
    result = _train_agent(["--agent", "nope", "--total-timesteps", "0"], tmp_path)
    assert result.returncode == 2
    for name in ("paper", "random", "attribute-oracle", *INDEX_AGENTS, *QUERY_AGENTS):
        assert repr(name) in result.stderr
    assert "--total-timesteps must be >= 1" in result.stderr
