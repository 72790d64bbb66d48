"""Shoppers who give up or settle: the environments' ``patience`` and ``accept_rank`` options."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from agents.baselines import RandomAgent
from agents.evaluation import EpisodeSet, evaluate, format_turn_table, metric_values, summarize
from dialog_env import DialogRetrievalEnv, DialogRetrievalVectorEnv
from dialog_env.errors import ConfigurationError
from dialog_env.tolerance import ShopperTolerance


def _ranks_to(env: DialogRetrievalEnv, target: int) -> np.ndarray:
    """``(N,) int64``: the target's rank w.r.t. every image of the split shown."""
    images = np.arange(env.unwrapped.catalog.num_images)
    return env.unwrapped.ranker.target_ranks(images, np.full(images.size, target))


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3", [2]])
@pytest.mark.parametrize("name", ["patience", "accept_rank"])
def test_bad_values_are_refused_with_the_option_named(small_shoes, name, value):
    with pytest.raises(ConfigurationError, match=name):
        DialogRetrievalEnv(catalog=small_shoes, **{name: value})
    with pytest.raises(ConfigurationError, match=name):
        DialogRetrievalVectorEnv(num_envs=2, catalog=small_shoes, **{name: value})


def test_off_by_default_adds_no_info_and_changes_nothing(small_shoes):
    plain = DialogRetrievalEnv(catalog=small_shoes)
    explicit = DialogRetrievalEnv(catalog=small_shoes, patience=None, accept_rank=None)
    assert not plain.tolerance.enabled and plain.tolerance == ShopperTolerance()
    _, info = plain.reset(seed=3)
    _, explicit_info = explicit.reset(seed=3)
    assert "shopper_left" not in info and "is_accepted" not in info and info == explicit_info
    for action in (5, 6, 7):
        assert plain.step(action)[1:] == explicit.step(action)[1:]


def test_shopper_leaves_after_patience_turns_without_progress(small_shoes):
    env = DialogRetrievalEnv(catalog=small_shoes, patience=2, max_turns=10, render_mode="ansi")
    target = 0
    ranks = _ranks_to(env, target)
    order = np.argsort(ranks, kind="stable")
    best, worst = int(order[1]), int(order[-1])  # order[0] is the target itself
    _, info = env.reset(seed=0, options={"target": target, "initial": int(order[len(order) // 2])})
    assert info["shopper_left"] is False
    # Worse than the first image: no progress (1 of 2); then better than ever: progress resets the count.
    *_, terminated, truncated, info = env.step(worst)
    assert not terminated and not info["shopper_left"]
    *_, terminated, _, info = env.step(best)
    assert not terminated and not info["shopper_left"]
    *_, terminated, _, info = env.step(worst)  # 1 of 2
    assert not terminated
    *_, terminated, truncated, info = env.step(best)  # equal to the best so far is no progress: 2 of 2
    assert terminated and not truncated and info["shopper_left"] and not info["is_success"]
    assert env.render().rstrip().endswith("<- shopper leaves")


def test_shopper_accepts_an_image_whose_target_rank_is_within_accept_rank(small_shoes):
    env = DialogRetrievalEnv(catalog=small_shoes, accept_rank=2)
    target = 11
    ranks = _ranks_to(env, target)
    close = int(np.flatnonzero((ranks >= 1) & (ranks <= 2))[0])
    far = int(np.flatnonzero(ranks > 2)[0])
    env.reset(seed=0, options={"target": target, "initial": far})
    _, reward, terminated, truncated, info = env.step(far)
    assert not terminated and not info["is_accepted"]
    _, reward, terminated, truncated, info = env.step(close)
    assert terminated and not truncated and info["is_accepted"] and not info["is_success"]
    assert info["target_rank"] == ranks[close] <= 2
    assert reward == pytest.approx(info["rank_percentile"])  # rewards are unchanged


def test_the_target_itself_is_exact_success_not_an_alternative(small_shoes):
    env = DialogRetrievalEnv(catalog=small_shoes, accept_rank=5, patience=1, reward_mode="success")
    env.reset(seed=0, options={"target": 4, "initial": 9})
    _, reward, terminated, _, info = env.step(4)
    assert terminated and info["is_success"] and not info["is_accepted"] and not info["shopper_left"]
    assert reward == 1.0


def test_evaluation_reports_satisfied_and_left_as_measures_of_their_own(small_shoes):
    episodes = EpisodeSet.draw(100, 60, seed=1)
    kwargs = {"catalog": small_shoes, "split": "test"}
    plain = evaluate(RandomAgent(seed=0), episodes, kwargs, max_turns=6, seed=5)
    settling = evaluate(RandomAgent(seed=0), episodes, {**kwargs, "accept_rank": 10}, max_turns=6, seed=5)
    leaving = evaluate(RandomAgent(seed=0), episodes, {**kwargs, "patience": 1}, max_turns=6, seed=5)
    assert plain.satisfied is None and plain.left is None and "satisfied" not in metric_values(plain)
    assert settling.left is None and leaving.satisfied is None
    # Acceptances count only as "satisfied", and exact success is never set after a dialog ended.
    assert settling.satisfied.sum() > settling.success.sum()
    assert np.all(settling.satisfied >= settling.success)
    accepted_first = settling.satisfied & ~settling.success
    assert not np.any(accepted_first[:, :-1] & settling.success[:, 1:])
    assert np.all(np.diff(settling.satisfied.astype(int), axis=1) >= 0)
    # Cumulative: once left, left at every later turn; about half of random images make no progress.
    assert np.all(np.diff(leaving.left.astype(int), axis=1) >= 0)
    assert 0.2 < leaving.left[:, 0].mean() < 0.9 and leaving.left[:, -1].mean() > leaving.left[:, 0].mean()
    # A dialog that ended carries its last shown-image percentile.
    ended_at_1 = leaving.left[:, 0]
    np.testing.assert_array_equal(leaving.shown_percentile[ended_at_1, -1], leaving.shown_percentile[ended_at_1, 0])
    table = format_turn_table(summarize(leaving, resamples=50))
    assert "shopper left (%)" in table and "success by turn (%)" in table


def test_vector_env_exposes_the_options_in_its_info(small_shoes):
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=3, catalog=small_shoes, patience=3)
    _, info = envs.reset(seed=0)
    assert info["shopper_left"].dtype == np.bool_ and not info["shopper_left"].any()
    assert info["_shopper_left"].all() and "is_accepted" not in info
