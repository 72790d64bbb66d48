"""Property tests (Hypothesis): invariants of the environment on random small catalogues."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dialog_env import DialogRetrievalEnv
from dialog_env.ranking import rank_percentile
from dialog_env.synthetic import make_synthetic_shoes

CATALOGUES = {seed: make_synthetic_shoes(num_train=12, num_test=3, dim=4, seed=seed) for seed in range(4)}


@settings(max_examples=60, deadline=None)
@given(
    catalogue_seed=st.sampled_from(sorted(CATALOGUES)),
    episode_seed=st.integers(0, 2**31 - 1),
    reward_mode=st.sampled_from(["percentile", "improvement", "success"]),
    max_turns=st.integers(1, 6),
    actions=st.lists(st.integers(0, 11), min_size=1, max_size=12),
)
def test_single_env_invariants(catalogue_seed, episode_seed, reward_mode, max_turns, actions):
    env = DialogRetrievalEnv(catalog=CATALOGUES[catalogue_seed], reward_mode=reward_mode, max_turns=max_turns, expose_target=True)
    _, info = env.reset(seed=episode_seed)
    target, previous = info["target_index"], info["rank_percentile"]
    assert info["shown_index"] != target and not info["is_success"]
    for turn, action in enumerate(actions, start=1):
        observation, reward, terminated, truncated, info = env.step(action)
        assert 0 <= info["target_rank"] <= 11
        assert 0.0 <= info["rank_percentile"] <= 1.0
        assert info["rank_percentile"] == rank_percentile(info["target_rank"], 12)
        assert terminated == (action == target) == info["is_success"]
        if action == target:
            assert info["target_rank"] == 0
        assert truncated == (not terminated and turn == max_turns)
        expected = {"percentile": info["rank_percentile"], "improvement": info["rank_percentile"] - previous, "success": float(terminated)}
        assert np.isclose(reward, expected[reward_mode])
        assert observation["turn"][0] == turn and env.observation_space.contains(observation)
        previous = info["rank_percentile"]
        if terminated or truncated:
            break
