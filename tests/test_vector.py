"""The native vector environment: equivalence with single environments, validation, spaces."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env import DialogRetrievalEnv, DialogRetrievalVectorEnv
from dialog_env.errors import ConfigurationError, InvalidActionError, ResetNeeded
from dialog_env.ranking import Ranker

NOISY_USER = {"vague_rate": 0.2, "irrelevant_rate": 0.3, "mistake_rate": 0.2}


def assert_same_info(native: dict, reference: dict, path: str = "info") -> None:
    """Vector infos are identical: keys, dtypes, values; nested dicts (``final_info``) and object
    arrays of observation dicts (``final_obs``) included."""
    assert isinstance(native, dict) and native.keys() == reference.keys(), path
    for key, expected in reference.items():
        value = native[key]
        if isinstance(expected, dict):
            assert_same_info(value, expected, f"{path}[{key!r}]")
            continue
        assert value.dtype == expected.dtype and value.shape == expected.shape, f"{path}[{key!r}]"
        if expected.dtype == object and any(isinstance(item, dict) for item in expected):
            for i, (item, expected_item) in enumerate(zip(value, expected)):
                if expected_item is None:
                    assert item is None, f"{path}[{key!r}][{i}]"
                else:
                    assert_same_step((item, {}), (expected_item, {}))
        else:
            np.testing.assert_array_equal(value, expected, err_msg=f"{path}[{key!r}]")


def assert_same_step(native: tuple, reference: tuple) -> None:
    """Observations, rewards, terminations, truncations and infos are identical (dtypes too)."""
    *native_arrays, native_info = native
    *reference_arrays, reference_info = reference
    native_obs, reference_obs = native_arrays[0], reference_arrays[0]
    assert native_obs.keys() == reference_obs.keys()
    for key in reference_obs:
        assert native_obs[key].dtype == reference_obs[key].dtype, key
        np.testing.assert_array_equal(native_obs[key], reference_obs[key], err_msg=key)
    for native_array, reference_array in zip(native_arrays[1:], reference_arrays[1:]):
        assert native_array.dtype == reference_array.dtype
        np.testing.assert_array_equal(native_array, reference_array)
    assert_same_info(native_info, reference_info)


def make_pair(catalog, num_envs: int, autoreset_mode: str | None = None, **kwargs):
    """The native vector env and ``SyncVectorEnv`` over single envs, in the same autoreset mode."""
    mode = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
    native = gym.make_vec("DialogRetrieval-v0", num_envs=num_envs, catalog=catalog, **mode, **kwargs)
    # gym.make_vec passes vector_kwargs to SyncVectorEnv; a vector_entry_point takes them as kwargs.
    reference = gym.make_vec("DialogRetrieval-v0", num_envs=num_envs, vectorization_mode="sync",
                             vector_kwargs=mode, catalog=catalog, **kwargs)  # fmt: skip
    assert isinstance(native, DialogRetrievalVectorEnv)
    assert isinstance(reference, SyncVectorEnv)
    assert native.autoreset_mode == reference.autoreset_mode == native.metadata["autoreset_mode"]
    return native, reference


def targets_of(reference: SyncVectorEnv) -> np.ndarray:
    """Each dialog's current target, read from the reference's single envs (tests only)."""
    return np.array([env.unwrapped._target for env in reference.envs])


def test_make_vec_uses_the_native_env_with_next_step_autoreset(small_shoes):
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=3, catalog=small_shoes)
    assert isinstance(envs, DialogRetrievalVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.num_envs == 3
    assert envs.action_space == gym.spaces.MultiDiscrete([300] * 3)
    assert envs.single_action_space == gym.spaces.Discrete(300)
    obs, _ = envs.reset(seed=0)
    assert obs["feedback"].shape == (3, 16) and obs["feedback"].dtype == np.int64
    assert obs["image"].shape == (3, 32) and obs["image"].dtype == np.float32
    assert obs["turn"].shape == (3, 1) and obs["turn"].dtype == np.int64
    assert envs.observation_space.contains(obs)


@pytest.mark.parametrize("reward_mode", ["percentile", "improvement", "success"])
def test_matches_sync_vector_env_step_for_step_with_autoresets(small_shoes, reward_mode):
    num_envs = 5
    native, reference = make_pair(
        small_shoes, num_envs, max_turns=3, reward_mode=reward_mode, expose_target=True, user_kwargs=NOISY_USER
    )
    assert_same_step(native.reset(seed=11), reference.reset(seed=11))
    rng = np.random.default_rng(0)
    ended = 0
    info = native._get_info()
    for _step in range(12):
        actions = rng.integers(small_shoes.select("train").num_images, size=num_envs)
        # Show the target now and then, so that terminations (and their autoresets) happen too.
        hit = rng.random(num_envs) < 0.3
        actions = np.where(hit, info["target_index"], actions)
        native_step = native.step(actions)
        assert_same_step(native_step, reference.step(actions))
        info = native_step[-1]
        ended += int(native_step[2].sum() + native_step[3].sum())
    assert ended >= num_envs  # truncations and terminations were exercised


def test_matches_independent_single_envs(small_shoes):
    num_envs, seed = 4, 123
    envs = DialogRetrievalVectorEnv(num_envs=num_envs, catalog=small_shoes, split="test", max_turns=10)
    singles = [DialogRetrievalEnv(catalog=small_shoes, split="test", max_turns=10) for _ in range(num_envs)]
    obs, infos = envs.reset(seed=seed)
    single_results = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    for i, (single_obs, single_info) in enumerate(single_results):
        np.testing.assert_array_equal(obs["feedback"][i], single_obs["feedback"])
        assert infos["feedback_text"][i] == single_info["feedback_text"]
        assert infos["target_rank"][i] == single_info["target_rank"]
    rng = np.random.default_rng(5)
    for _ in range(4):
        actions = rng.integers(100, size=num_envs)
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        for i, env in enumerate(singles):
            single_obs, reward, single_terminated, single_truncated, single_info = env.step(int(actions[i]))
            for key in single_obs:
                np.testing.assert_array_equal(obs[key][i], single_obs[key])
            assert rewards[i] == reward
            assert (terminated[i], truncated[i]) == (single_terminated, single_truncated)
            for key, value in single_info.items():
                assert infos[key][i] == value, key


def test_partial_reset_with_mask_matches_sync(small_shoes):
    native, reference = make_pair(small_shoes, 4, max_turns=5)
    native.reset(seed=3)
    reference.reset(seed=3)
    actions = np.array([1, 2, 3, 4])
    assert_same_step(native.step(actions), reference.step(actions))
    mask = np.array([True, False, True, False])
    assert_same_step(native.reset(options={"reset_mask": mask}), reference.reset(options={"reset_mask": mask.copy()}))
    assert_same_step(native.step(actions), reference.step(actions))


def test_seed_none_differs_between_instances_and_seed_list_works(small_shoes):
    first = DialogRetrievalVectorEnv(num_envs=8, catalog=small_shoes)
    second = DialogRetrievalVectorEnv(num_envs=8, catalog=small_shoes)
    _, info_a = first.reset()
    _, info_b = second.reset()
    assert not np.array_equal(info_a["shown_index"], info_b["shown_index"])
    _, info_list = first.reset(seed=[5, 6, 7, 8, 9, 10, 11, 12])
    _, info_int = second.reset(seed=5)
    np.testing.assert_array_equal(info_list["shown_index"], info_int["shown_index"])


def test_reset_options_fix_targets_and_first_images(small_shoes):
    envs = DialogRetrievalVectorEnv(num_envs=3, catalog=small_shoes, expose_target=True)
    targets, initials = np.array([0, 5, 7]), np.array([1, 6, 0])
    obs, info = envs.reset(seed=0, options={"target": targets, "initial": initials})
    np.testing.assert_array_equal(info["target_index"], targets)
    np.testing.assert_array_equal(info["shown_index"], initials)
    np.testing.assert_array_equal(obs["image"], small_shoes.select("train").features[initials])
    _, _, terminated, _, info = envs.step(targets)
    assert terminated.all() and info["is_success"].all()
    np.testing.assert_array_equal(info["target_rank"], 0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"target": np.array([0, 1])}, "must be a \\(3,\\) integer array"),
        ({"target": np.array([0.0, 1.0, 2.0])}, "integer array"),
        ({"initial": np.array([0, 1, 300])}, "0..299"),
        ({"target": np.array([0, 1, 2]), "initial": np.array([3, 1, 4])}, "dialog 1 must differ"),
        ({"goal": 1}, "unknown reset option"),
        ({"reset_mask": np.array([1, 0, 1])}, "bool array"),
    ],
)
def test_bad_reset_options_raise(small_shoes, options, message):
    envs = DialogRetrievalVectorEnv(num_envs=3, catalog=small_shoes)
    with pytest.raises(ConfigurationError, match=message):
        envs.reset(seed=0, options=options)


@pytest.mark.parametrize(
    "actions, message",
    [
        (np.array([0, 1]), "shape \\(2,\\)"),
        (np.array([0.0, 1.0, 2.0]), "dtype float64"),
        (np.array([True, False, True]), "dtype bool"),
        (np.array([0, 300, 1]), "action 300 of dialog 1 is out of range: valid image indices are 0..299"),
        (np.array([-1, 0, 1]), "0..299"),
        (3, "shape \\(\\)"),
    ],
)
def test_bad_actions_raise_invalid_action_error(small_shoes, actions, message):
    envs = DialogRetrievalVectorEnv(num_envs=3, catalog=small_shoes)
    envs.reset(seed=0)
    with pytest.raises(InvalidActionError, match=message):
        envs.step(actions)


def test_step_before_reset_and_bad_constructor_arguments(small_shoes):
    with pytest.raises(ResetNeeded):
        DialogRetrievalVectorEnv(num_envs=2, catalog=small_shoes).step(np.array([0, 1]))
    with pytest.raises(ConfigurationError, match="num_envs"):
        DialogRetrievalVectorEnv(num_envs=0, catalog=small_shoes)
    with pytest.raises(ConfigurationError, match="reward_mode"):
        DialogRetrievalVectorEnv(num_envs=2, catalog=small_shoes, reward_mode="rank")


def _count_rank_calls(monkeypatch) -> list[int]:  # noqa: ANN001
    """Record the batch size of every ``Ranker.target_ranks`` call from now on."""
    calls: list[int] = []
    original = Ranker.target_ranks

    def counting(self, shown, targets):  # noqa: ANN001, ANN202
        calls.append(len(shown))
        return original(self, shown, targets)

    monkeypatch.setattr(Ranker, "target_ranks", counting)
    return calls


def test_one_rank_computation_per_step_for_all_dialogs(small_shoes, monkeypatch):
    calls = _count_rank_calls(monkeypatch)
    envs = DialogRetrievalVectorEnv(num_envs=6, catalog=small_shoes, max_turns=2)
    envs.reset(seed=0)
    for _ in range(5):  # includes autoresets
        calls.clear()
        envs.step(np.arange(6))
        assert calls == [6]


def test_observations_stay_in_space_and_are_fresh_arrays(small_shoes):
    envs = DialogRetrievalVectorEnv(num_envs=4, catalog=small_shoes, max_turns=3)
    obs, _ = envs.reset(seed=1)
    envs.action_space.seed(1)
    for _ in range(6):
        previous = {key: value.copy() for key, value in obs.items()}
        obs["feedback"][:] = -1  # mutating a returned observation must not corrupt the env
        obs, rewards, *_ = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs)
        assert ((rewards >= 0) & (rewards <= 1)).all()
        assert previous.keys() == obs.keys()


def test_render_ansi_matches_single_envs_and_pickle_round_trip(small_shoes):
    native, reference = make_pair(small_shoes, 2, render_mode="ansi", max_turns=4)
    native.reset(seed=9)
    reference.reset(seed=9)
    actions = np.array([3, 4])
    native.step(actions)
    reference.step(actions)
    assert native.render() == reference.render()
    clone = pickle.loads(pickle.dumps(native))
    assert_same_step(clone.step(actions), native.step(actions))


# ---------------------------------------------------------------------------- autoreset modes
@pytest.mark.parametrize("reward_mode", ["percentile", "improvement", "success"])
@pytest.mark.parametrize("autoreset_mode", ["NextStep", "SameStep", "Disabled"])
def test_matches_sync_vector_env_step_for_step_in_every_autoreset_mode(small_shoes, autoreset_mode, reward_mode):
    num_envs = 5
    native, reference = make_pair(
        small_shoes, num_envs, autoreset_mode, max_turns=3, reward_mode=reward_mode, user_kwargs=NOISY_USER
    )
    assert native.autoreset_mode == AutoresetMode(autoreset_mode)
    assert_same_step(native.reset(seed=21), reference.reset(seed=21))
    rng = np.random.default_rng(1)
    ended = np.zeros(num_envs, dtype=bool)
    counts = {"ended": 0, "final_obs": 0, "masked resets": 0}
    for _step in range(15):
        if autoreset_mode == "Disabled" and ended.any():
            # The user resets the ended dialogs (and now and then a running one too).
            mask = ended | (rng.random(num_envs) < 0.2)
            assert_same_step(
                native.reset(options={"reset_mask": mask}), reference.reset(options={"reset_mask": mask.copy()})
            )
            counts["masked resets"] += 1
        actions = rng.integers(small_shoes.select("train").num_images, size=num_envs)
        actions = np.where(rng.random(num_envs) < 0.3, targets_of(reference), actions)
        native_step = native.step(actions)
        assert_same_step(native_step, reference.step(actions))
        ended = native_step[2] | native_step[3]
        counts["ended"] += int(ended.sum())
        counts["final_obs"] += "final_obs" in native_step[4]
    assert counts["ended"] >= num_envs  # terminations and truncations were exercised
    assert (counts["final_obs"] > 0) == (autoreset_mode == "SameStep")
    assert (counts["masked resets"] > 0) == (autoreset_mode == "Disabled")


def test_same_step_returns_the_new_dialog_and_keeps_the_ended_one_in_final_obs(small_shoes):
    envs = DialogRetrievalVectorEnv(
        num_envs=3, catalog=small_shoes, max_turns=3, autoreset_mode="SameStep", expose_target=True
    )
    _, info = envs.reset(seed=0, options={"target": np.array([0, 5, 7]), "initial": np.array([1, 6, 8])})
    observations, rewards, terminated, truncated, info = envs.step(np.array([0, 9, 9]))  # dialog 0 finds its target
    assert terminated.tolist() == [True, False, False] and not truncated.any() and rewards[0] == 1.0
    assert info["_final_obs"].tolist() == info["_final_info"].tolist() == [True, False, False]
    final_obs, final_info = info["final_obs"], info["final_info"]
    assert final_obs[1] is None and final_obs[2] is None
    np.testing.assert_array_equal(final_obs[0]["image"], small_shoes.select("train").features[0])
    assert final_obs[0]["turn"].tolist() == [1] and final_obs[0]["turn"].dtype == np.int64
    assert final_info["is_success"].tolist() == [True, False, False] and final_info["target_rank"][0] == 0
    assert final_info["target_index"][0] == 0 and final_info["_turn"].tolist() == [True, False, False]
    assert final_info["feedback_text"][0] and final_info["feedback_text"][1] is None
    # The returned entries of dialog 0 are its new dialog's first observation and info.
    assert observations["turn"][:, 0].tolist() == [0, 1, 1] and info["turn"].tolist() == [0, 1, 1]
    assert info["shown_index"][0] != info["target_index"][0]
    assert info["_turn"].all()
    _, _, terminated, truncated, info = envs.step(np.array([3, 9, 9]))
    assert not (terminated | truncated).any()
    assert "final_obs" not in info and "final_info" not in info  # nothing ended
    _, _, terminated, truncated, info = envs.step(np.array([3, 9, 9]))  # dialogs 1 and 2 are truncated
    assert truncated.tolist() == [False, True, True] and not terminated.any()
    assert info["_final_obs"].tolist() == [False, True, True] and info["final_obs"][0] is None
    assert info["turn"].tolist() == [2, 0, 0] and info["final_info"]["turn"].tolist() == [0, 3, 3]


def test_disabled_mode_refuses_to_step_an_ended_dialog_like_sync_vector_env(small_shoes):
    native, reference = make_pair(small_shoes, 3, "Disabled", max_turns=1)
    assert_same_step(native.reset(seed=4), reference.reset(seed=4))
    actions = np.array([5, 6, 7])
    assert_same_step(native.step(actions), reference.step(actions))  # every dialog is truncated
    with pytest.raises(ResetNeeded, match=r"dialog\(s\) \[0, 1, 2\] have ended.*'Disabled'.*reset_mask"):
        native.step(actions)
    with pytest.raises(AssertionError):  # SyncVectorEnv asserts (after stepping nothing here)
        reference.step(actions)
    mask = np.array([True, False, True])
    assert_same_step(native.reset(options={"reset_mask": mask}), reference.reset(options={"reset_mask": mask.copy()}))
    with pytest.raises(ResetNeeded, match=r"dialog\(s\) \[1\]"):
        native.step(actions)
    # The refused steps changed nothing: after resetting dialog 1 too, both continue identically.
    reference = gym.make_vec("DialogRetrieval-v0", num_envs=3, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": "Disabled"}, catalog=small_shoes,
                             max_turns=1)  # fmt: skip
    reference.reset(seed=4)
    reference.step(actions)
    reference.reset(options={"reset_mask": mask.copy()})
    last = np.array([False, True, False])
    assert_same_step(native.reset(options={"reset_mask": last}), reference.reset(options={"reset_mask": last.copy()}))
    assert_same_step(native.step(actions), reference.step(actions))


@pytest.mark.parametrize(
    "mode, expected",
    [
        (AutoresetMode.NEXT_STEP, AutoresetMode.NEXT_STEP),
        ("NextStep", AutoresetMode.NEXT_STEP),
        (AutoresetMode.SAME_STEP, AutoresetMode.SAME_STEP),
        ("SameStep", AutoresetMode.SAME_STEP),
        (AutoresetMode.DISABLED, AutoresetMode.DISABLED),
        ("Disabled", AutoresetMode.DISABLED),
    ],
)
def test_autoreset_mode_accepts_the_enum_and_its_values(small_shoes, mode, expected):
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=2, catalog=small_shoes, autoreset_mode=mode)
    assert envs.autoreset_mode is expected and envs.metadata["autoreset_mode"] is expected
    assert DialogRetrievalVectorEnv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP  # the class dict is untouched
    assert envs.metadata["render_modes"] == DialogRetrievalVectorEnv.metadata["render_modes"]
    clone = pickle.loads(pickle.dumps(envs))
    assert clone.autoreset_mode is expected


@pytest.mark.parametrize("mode", ["same_step", "SAME_STEP", "nextstep", "", 1, None, True])
def test_unknown_autoreset_mode_names_the_allowed_values(small_shoes, mode):
    with pytest.raises(ConfigurationError, match=r"unknown autoreset_mode .*\['NextStep', 'SameStep', 'Disabled'\]"):
        DialogRetrievalVectorEnv(num_envs=2, catalog=small_shoes, autoreset_mode=mode)


def test_make_vec_takes_the_autoreset_mode_as_a_keyword_not_in_vector_kwargs(small_shoes):
    """Gymnasium 1.4 refuses ``vector_kwargs`` for a vector entry point (the class docstring says so)."""
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        catalog=small_shoes, autoreset_mode="SameStep")  # fmt: skip
    assert envs.autoreset_mode is AutoresetMode.SAME_STEP
    assert envs.spec.kwargs["autoreset_mode"] == "SameStep"
    with pytest.raises(gym.error.Error, match="only through kwargs"):
        gym.make_vec("DialogRetrieval-v0", num_envs=2, catalog=small_shoes,
                     vector_kwargs={"autoreset_mode": "SameStep"})  # fmt: skip


def test_same_step_ranks_the_ended_dialogs_only_once_more(small_shoes, monkeypatch):
    calls = _count_rank_calls(monkeypatch)
    envs = DialogRetrievalVectorEnv(num_envs=6, catalog=small_shoes, max_turns=2, autoreset_mode="SameStep")
    envs.reset(seed=0)
    calls.clear()
    envs.step(np.arange(6))
    assert calls == [6]
    calls.clear()
    envs.step(np.arange(6))  # all truncated and restarted
    assert calls == [6, 6]


@pytest.mark.parametrize("autoreset_mode", ["NextStep", "SameStep", "Disabled"])
def test_feedback_text_in_info_false_leaves_out_only_the_caption(small_shoes, autoreset_mode):
    native, reference = make_pair(small_shoes, 3, autoreset_mode, max_turns=1, feedback_text_in_info=False)
    with_text = DialogRetrievalVectorEnv(num_envs=3, catalog=small_shoes, max_turns=1, autoreset_mode=autoreset_mode)
    result, full = native.reset(seed=2), with_text.reset(seed=2)
    assert_same_step(result, reference.reset(seed=2))
    assert set(full[1]) - set(result[1]) == {"feedback_text", "_feedback_text"}
    step = native.step(np.array([1, 2, 3]))
    assert_same_step(step, reference.step(np.array([1, 2, 3])))
    assert all(value.dtype != object for key, value in step[4].items() if key not in ("final_obs", "final_info"))
    np.testing.assert_array_equal(step[0]["feedback"], with_text.step(np.array([1, 2, 3]))[0]["feedback"])


@pytest.mark.parametrize("autoreset_mode", ["NextStep", "SameStep", "Disabled"])
def test_shopper_patience_and_alternatives_match_sync_vector_env(small_shoes, autoreset_mode):
    """The shopper options end dialogs the same way natively and in single envs, in every mode."""
    num_envs = 6
    native, reference = make_pair(small_shoes, num_envs, autoreset_mode, max_turns=6, patience=2, accept_rank=15)
    assert_same_step(native.reset(seed=4), reference.reset(seed=4))
    rng = np.random.default_rng(2)
    counts = {"is_accepted": 0, "shopper_left": 0, "is_success": 0}
    ended = np.zeros(num_envs, dtype=bool)
    for _step in range(30):
        if autoreset_mode == "Disabled" and ended.any():
            assert_same_step(native.reset(options={"reset_mask": ended}),
                             reference.reset(options={"reset_mask": ended.copy()}))  # fmt: skip
        actions = rng.integers(small_shoes.select("train").num_images, size=num_envs)
        actions = np.where(rng.random(num_envs) < 0.1, targets_of(reference), actions)
        native_step = native.step(actions)
        assert_same_step(native_step, reference.step(actions))
        info = native_step[4].get("final_info", native_step[4])
        ended = native_step[2] | native_step[3]
        for key in counts:
            counts[key] += int(np.sum(info[key] & ended))
    assert min(counts.values()) > 0, counts  # every way of ending was exercised
