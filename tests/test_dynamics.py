"""The turn model: one implementation of a dialog turn for the envs and the planners."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dialog_env  # noqa: F401 - registers the environment
from dialog_env.dynamics import (
    REWARD_FUNCTIONS,
    DialogModel,
    improvement_reward,
    percentile_reward,
    success_reward,
    uniform_except,
)
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker, rank_percentile
from dialog_env.synthetic import make_synthetic_shoes
from dialog_env.users import make_user
from dialog_env.vector import DialogRetrievalVectorEnv


@pytest.fixture(scope="module")
def catalogue():
    return make_synthetic_shoes(num_train=80, num_test=40, dim=16, seed=3)


@pytest.fixture(scope="module")
def split(catalogue):
    return catalogue.select("train")


def test_respond_ranks_captions_and_encodes_like_its_parts(split):
    user = make_user("rule", vague_rate=0.3)
    model = DialogModel(split, user, max_tokens=12)
    targets, shown = np.array([0, 5, 7, 7]), np.array([3, 5, 1, 2])
    response = model.respond(targets, shown, [np.random.default_rng(i) for i in range(4)])
    ranker = Ranker(split.features, split.squared_norms)
    assert np.array_equal(response.ranks, ranker.target_ranks(shown, targets))
    assert response.ranks[1] == 0  # the target itself is shown
    assert np.array_equal(response.percentiles, rank_percentile(response.ranks, split.num_images))
    assert response.captions == user.describe(split, targets, shown, [np.random.default_rng(i) for i in range(4)])
    assert response.tokens.shape == (4, 12) and response.tokens.dtype == np.int64
    assert np.array_equal(response.tokens, user.vocabulary.encode_batch(response.captions, 12))
    assert np.array_equal(model.ranks(targets, shown), response.ranks)


def test_a_batch_answers_like_its_dialogs_one_by_one(split):
    model = DialogModel(split, make_user("rule", vague_rate=0.2, mistake_rate=0.2))
    targets, shown = np.arange(10), np.arange(10)[::-1].copy()
    batch = model.respond(targets, shown, [np.random.default_rng([4, i]) for i in range(10)])
    for i in range(10):
        alone = model.respond(targets[i : i + 1], shown[i : i + 1], [np.random.default_rng([4, i])])
        assert alone.captions == batch.captions[i : i + 1]
        assert alone.ranks[0] == batch.ranks[i]
        assert np.array_equal(alone.tokens[0], batch.tokens[i])


def test_the_envs_expose_the_model_they_play(catalogue):
    env = gym.make("DialogRetrieval-v0", catalog=catalogue)
    model = env.unwrapped.model
    assert isinstance(model, DialogModel)
    assert env.unwrapped.catalog is model.catalog and env.unwrapped.user is model.user
    assert env.unwrapped.ranker is model.ranker and env.unwrapped.vocabulary is model.vocabulary
    _, info = env.reset(seed=5, options={"target": 3, "initial": 9})
    # Replaying the env's first turn through its model with a copy of its generator gives the same turn.
    envs = DialogRetrievalVectorEnv(num_envs=3, catalog=catalogue)
    assert isinstance(envs.model, DialogModel) and envs.catalog is envs.model.catalog
    replay = DialogModel(model.catalog, model.user).respond(
        np.array([3]), np.array([9]), [gym.utils.seeding.np_random(5)[0]]
    )
    assert info["target_rank"] == replay.ranks[0]
    assert info["feedback_text"] == replay.captions[0]


@pytest.mark.parametrize("name", sorted(REWARD_FUNCTIONS))
def test_named_rewards_are_the_reward_functions(split, name):
    percentiles, previous, found = np.array([0.25, 1.0]), np.array([0.5, 0.75]), np.array([False, True])
    expected = {
        "percentile": [0.25, 1.0],
        "improvement": [-0.25, 0.25],
        "success": [0.0, 1.0],
    }[name]
    model = DialogModel(split, make_user("rule"), reward_fn=name)
    assert model.reward(percentiles, previous, found).tolist() == expected
    assert REWARD_FUNCTIONS[name] in (percentile_reward, improvement_reward, success_reward)


def step_cost(percentiles, previous, found):
    """A user's own reward: success minus a cost per turn."""
    return found.astype(float) - 0.01


def test_a_reward_function_of_ones_own_in_both_envs(catalogue):
    catalog = catalogue
    env = DialogRetrievalEnv(catalog=catalog, reward_mode=step_cost, expose_target=True, max_turns=3)
    _, info = env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(info["target_index"])
    assert terminated and reward == pytest.approx(0.99)
    envs = DialogRetrievalVectorEnv(num_envs=4, catalog=catalog, reward_mode=step_cost, expose_target=True)
    _, infos = envs.reset(seed=0)
    actions = np.where(np.arange(4) < 2, infos["target_index"], infos["shown_index"])
    _, rewards, terminations, _, _ = envs.step(actions)
    assert rewards.tolist() == pytest.approx([0.99, 0.99, -0.01, -0.01])
    assert terminations.tolist() == [True, True, False, False]


def test_bad_rewards_are_refused_with_a_clear_message(split):
    with pytest.raises(ConfigurationError, match="unknown reward_mode 'rank'"):
        DialogModel(split, make_user("rule"), reward_fn="rank")
    with pytest.raises(ConfigurationError, match="reward_mode must be one of"):
        DialogRetrievalEnv(reward_mode=3)
    broken = DialogModel(split, make_user("rule"), reward_fn=lambda p, q, f: np.zeros(len(p) + 1))
    with pytest.raises(ConfigurationError, match=r"must return \(2,\) finite rewards"):
        broken.reward(np.zeros(2), np.zeros(2), np.zeros(2, dtype=bool))
    nan = DialogModel(split, make_user("rule"), reward_fn=lambda p, q, f: p * np.nan)
    with pytest.raises(ConfigurationError, match="finite"):
        nan.reward(np.zeros(2), np.zeros(2), np.zeros(2, dtype=bool))


def test_uniform_except_never_draws_the_excluded_index_and_matches_one_draw():
    rng = np.random.default_rng(0)
    draws = uniform_except(rng, 5, 2, size=20_000)
    assert 2 not in draws and set(draws.tolist()) == {0, 1, 3, 4}
    counts = np.bincount(draws, minlength=5)[[0, 1, 3, 4]]
    assert counts.min() > 4_700 and counts.max() < 5_300
    excluded = np.array([[0], [4]])
    rows = uniform_except(np.random.default_rng(1), 5, excluded, size=(2, 1000))
    assert not (rows == excluded).any()
    # One rng.integers call: the same generator state as drawing N - 1 values.
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    uniform_except(a, 7, 3, size=4)
    b.integers(6, size=4)
    assert a.integers(1 << 30) == b.integers(1 << 30)
    assert isinstance(int(uniform_except(np.random.default_rng(2), 3, 0)), int)
