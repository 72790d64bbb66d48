"""The no-repeat action mask: single env, vector env (every autoreset mode) and the SB3 VecEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env.env import DialogRetrievalEnv
from dialog_env.synthetic import make_synthetic_shoes
from dialog_env.vector import DialogRetrievalVectorEnv

CATALOG = make_synthetic_shoes(num_train=40, num_test=12, dim=6, seed=3)
KWARGS = {"catalog": CATALOG, "max_turns": 4, "user_kwargs": {"vague_rate": 0.2}}
N = CATALOG.select("train").num_images


def expected_mask(shown: list[int]) -> np.ndarray:
    mask = np.ones(N, dtype=np.bool_)
    mask[shown] = False
    return mask


def test_single_env_masks_every_image_shown_in_the_dialog_and_only_those():
    env = DialogRetrievalEnv(**KWARGS)
    before = env.action_masks()
    assert before.shape == (N,) and before.dtype == np.bool_ and before.all()  # no dialog yet
    rng = np.random.default_rng(0)
    dialogs = 0
    _, info = env.reset(seed=5)
    shown = [info["shown_index"]]
    for _ in range(60):
        mask = env.action_masks()
        np.testing.assert_array_equal(mask, expected_mask(shown))
        assert mask[env._target]  # the target is never masked while the dialog runs
        # Repeat an image now and then: the mask stays a set, not a count.
        action = shown[-1] if rng.random() < 0.2 else int(rng.integers(N))
        _, _, terminated, truncated, info = env.step(action)
        shown.append(info["shown_index"])
        mask[0] = not mask[0]  # the caller's copy: the env's own state does not change
        if terminated or truncated:
            np.testing.assert_array_equal(env.action_masks(), expected_mask(shown))  # until reset
            _, info = env.reset()
            shown = [info["shown_index"]]
            np.testing.assert_array_equal(env.action_masks(), expected_mask(shown))  # a new dialog's
            dialogs += 1
    assert dialogs >= 10


def test_asking_for_the_mask_changes_nothing_else():
    asked, plain = DialogRetrievalEnv(**KWARGS), DialogRetrievalEnv(**KWARGS)
    first, _ = asked.reset(seed=2)
    again, _ = plain.reset(seed=2)
    for action in [3, 7, 3, 11]:
        asked.action_masks()
        first, *rest = asked.step(action)
        again, *expected = plain.step(action)
        for key in first:
            np.testing.assert_array_equal(first[key], again[key])
        assert rest == expected


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_vector_masks_equal_single_env_masks_per_dialog(mode):
    """Row i of the vector env's mask equals dialog i of SyncVectorEnv, autoresets included."""
    batch = 5
    envs = DialogRetrievalVectorEnv(num_envs=batch, autoreset_mode=mode, **KWARGS)
    sync = gym.make_vec("DialogRetrieval-v0", num_envs=batch, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode}, **KWARGS)  # fmt: skip
    assert envs.action_masks().shape == (batch, N) and envs.action_masks().all()  # before the first reset

    def single_masks() -> np.ndarray:
        return np.stack(sync.call("action_masks"))

    envs.reset(seed=9)
    sync.reset(seed=9)
    rng = np.random.default_rng(1)
    ended_total = 0
    for step in range(50):
        masks = envs.action_masks()
        assert masks.shape == (batch, N) and masks.dtype == np.bool_
        np.testing.assert_array_equal(masks, single_masks())
        actions = rng.integers(N, size=batch)
        if step % 4 == 0:  # repeat the last image in dialog 0
            actions[0] = envs._shown[0]
        if step % 3 == 0:  # find the target in dialog 1, so that terminations happen
            actions[1] = envs._targets[1]
        _, _, terminations, truncations, infos = envs.step(actions)
        _, _, sync_terminations, sync_truncations, _ = sync.step(actions)
        np.testing.assert_array_equal(terminations, sync_terminations)
        np.testing.assert_array_equal(truncations, sync_truncations)
        ended = terminations | truncations
        ended_total += int(ended.sum())
        if mode == AutoresetMode.SAME_STEP:
            # The mask after the ending step is the new dialog's: only its first image is shown.
            for i in np.flatnonzero(ended):
                np.testing.assert_array_equal(envs.action_masks()[i], expected_mask([infos["shown_index"][i]]))
        if mode == AutoresetMode.DISABLED and ended.any():
            np.testing.assert_array_equal(envs.action_masks(), single_masks())  # the ended dialogs' masks
            envs.reset(options={"reset_mask": ended})
            sync.reset(options={"reset_mask": ended})
    np.testing.assert_array_equal(envs.action_masks(), single_masks())
    assert ended_total >= 10
    sync.close()


def test_next_step_mask_is_the_ended_dialog_until_the_reset_step_then_the_new_one():
    envs = DialogRetrievalVectorEnv(num_envs=2, autoreset_mode="NextStep", **{**KWARGS, "max_turns": 2})
    _, infos = envs.reset(seed=0, options={"target": np.array([0, 1]), "initial": np.array([5, 6])})
    envs.step(np.array([7, 8]))
    _, _, _, truncations, _ = envs.step(np.array([9, 1]))  # dialog 0 truncated, dialog 1 found its target
    assert truncations[0]
    np.testing.assert_array_equal(envs.action_masks()[0], expected_mask([5, 7, 9]))
    np.testing.assert_array_equal(envs.action_masks()[1], expected_mask([6, 8, 1]))
    _, _, _, _, infos = envs.step(np.array([2, 3]))  # ignored: both dialogs restart
    for i in range(2):
        np.testing.assert_array_equal(envs.action_masks()[i], expected_mask([infos["shown_index"][i]]))


def test_a_partial_reset_starts_only_the_reset_dialogs_masks():
    envs = DialogRetrievalVectorEnv(num_envs=3, **KWARGS)
    _, infos = envs.reset(seed=4, options={"target": np.array([0, 1, 2]), "initial": np.array([3, 4, 5])})
    envs.step(np.array([10, 11, 12]))
    _, infos = envs.reset(options={"reset_mask": np.array([False, True, False])})
    masks = envs.action_masks()
    np.testing.assert_array_equal(masks[0], expected_mask([3, 10]))
    np.testing.assert_array_equal(masks[1], expected_mask([infos["shown_index"][1]]))
    np.testing.assert_array_equal(masks[2], expected_mask([5, 12]))


def test_masks_of_a_large_batch_stay_small():
    catalog = make_synthetic_shoes(num_train=2_000, num_test=10, dim=4, seed=0)
    envs = DialogRetrievalVectorEnv(num_envs=256, catalog=catalog, max_turns=10)
    assert envs._shown_history.nbytes == 256 * 11 * 8  # the env keeps shown indices, not (B, N) masks
    envs.reset(seed=0)
    for _ in range(3):
        envs.step(envs.action_space.sample())
    masks = envs.action_masks()
    assert masks.shape == (256, 2_000) and masks.dtype == np.bool_ and masks.nbytes == 256 * 2_000
    np.testing.assert_array_equal(masks.sum(axis=1) >= 2_000 - 4, True)


# ---------------------------------------------------------------------------- the SB3 VecEnv
def test_native_sb3_vec_env_gives_per_dialog_masks_and_sb3_contrib_reads_them():
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.sb3_vec import NativeDialogVecEnv

    native = NativeDialogVecEnv(3, **KWARGS)
    reference = DummyVecEnv([lambda: Monitor(DialogRetrievalEnv(**KWARGS)) for _ in range(3)])
    assert is_masking_supported(native) and is_masking_supported(reference)
    native.seed(2)
    reference.seed(2)
    native.reset()
    reference.reset()
    rng = np.random.default_rng(3)
    dones_seen = 0
    for step in range(30):
        masks = native.action_masks()
        assert masks.shape == (3, N) and masks.dtype == np.bool_
        per_dialog = native.env_method("action_masks")
        assert len(per_dialog) == 3 and all(row.shape == (N,) for row in per_dialog)
        np.testing.assert_array_equal(np.stack(per_dialog), masks)
        np.testing.assert_array_equal(get_action_masks(native), get_action_masks(reference))
        np.testing.assert_array_equal(native.env_method("action_masks", indices=[2])[0], masks[2])
        actions = rng.integers(N, size=3)
        if step % 3 == 0:
            actions[0] = native.envs._targets[0]
        native.step_async(actions)
        reference.step_async(actions)
        _, _, dones, _ = native.step_wait()
        _, _, reference_dones, _ = reference.step_wait()
        np.testing.assert_array_equal(dones, reference_dones)
        for i in np.flatnonzero(dones):  # SB3 resets in the ending step: the new dialog's mask
            assert native.action_masks()[i].sum() == N - 1
        dones_seen += int(dones.sum())
    assert dones_seen >= 5


def test_query_actions_have_no_masks():
    pytest.importorskip("stable_baselines3")
    from agents.sb3_vec import NativeDialogVecEnv
    from dialog_env.errors import ConfigurationError

    envs = NativeDialogVecEnv(2, action="query", **KWARGS)
    envs.reset()
    assert not envs.has_attr("action_masks") and envs.has_attr("catalog")
    for call in (envs.action_masks, lambda: envs.env_method("action_masks")):
        with pytest.raises(ConfigurationError, match="action='query'.*use action='index'"):
            call()
