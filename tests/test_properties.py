"""Property tests (Hypothesis): invariants of the environments on random small catalogues.

Every step of random dialogs is checked against references computed here, independently of the
environment: the rank by float64 brute force over the catalogue, the percentile, reward,
termination and truncation from their definitions in the env docstring, the observation from the
catalogue and the vocabulary. The native vector env is checked the same way and, dialog by dialog,
against single environments: dialog ``i`` of a vector env reset with seed ``s`` is a single env
reset with seed ``s + i``, and a dialog that ended is reset by the next ``step`` (``NEXT_STEP``
autoreset), which ignores its action and continues that dialog's generator. In each of Gymnasium's
three autoreset modes, the vector env also equals ``SyncVectorEnv`` in that mode step for step,
``final_obs``/``final_info`` of ``SAME_STEP`` and the masked resets of ``DISABLED`` included. The
last tests show that each check can fail.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from hypothesis import event, given, settings
from hypothesis import strategies as st

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env import DialogRetrievalEnv, DialogRetrievalVectorEnv
from dialog_env.catalog import Catalog
from dialog_env.errors import ResetNeeded
from dialog_env.ranking import rank_percentile
from dialog_env.synthetic import make_synthetic_shoes


def _coarse(catalog: Catalog, step: float) -> Catalog:
    """The catalogue with its features rounded to a coarse grid: duplicate images and equal distances."""
    return Catalog(
        features=(np.round(catalog.features / step) * step).astype(np.float32),
        ids=catalog.ids,
        splits=catalog.splits,
        attributes=catalog.attributes,
        attribute_schema=list(catalog.attribute_schema.values()),
        name=f"{catalog.name}-coarse",
    )


# Tiny catalogues: the smallest possible split (2 images), one-dimensional features, and features
# on a coarse grid, where the target often ties with other images (ties are not counted in a rank).
CATALOGUES: dict[str, Catalog] = {
    f"seed{seed}-n{num_train}-d{dim}": make_synthetic_shoes(num_train=num_train, num_test=3, dim=dim, seed=seed)
    for seed, num_train, dim in ((0, 12, 4), (1, 12, 4), (2, 2, 3), (3, 7, 2), (4, 20, 8), (5, 9, 1))
}
CATALOGUES["ties-n16-d2"] = _coarse(make_synthetic_shoes(num_train=16, num_test=3, dim=2, seed=6), 0.5)

# Both registered user simulators; the rule-based one also with noise, which draws more numbers
# from each dialog's generator.
USERS: dict[str, tuple[str, dict[str, float] | None]] = {
    "rule": ("rule", None),
    "rule-noisy": ("rule", {"vague_rate": 0.2, "irrelevant_rate": 0.3, "mistake_rate": 0.2}),
    "relative-attribute": ("relative-attribute", None),
}
REWARD_MODES = ("percentile", "improvement", "success")

# An action code below SHOW_TARGET shows the dialog's target (so that terminations are common);
# any other code c shows image (c - SHOW_TARGET) mod N.
SHOW_TARGET = 20
ACTION_CODES = st.integers(0, 99)
MAX_ENVS = 4


def env_kwargs(catalogue: str, split: str, user: str, **kwargs: Any) -> dict[str, Any]:
    name, user_kwargs = USERS[user]
    return {"catalog": CATALOGUES[catalogue], "split": split, "user": name, "user_kwargs": user_kwargs, **kwargs}


def action_of(code: int, target: int, num_images: int) -> int:
    return target if code < SHOW_TARGET else (code - SHOW_TARGET) % num_images


def brute_force_rank(features: np.ndarray, shown: int, target: int) -> int:
    """Images strictly closer to the shown one than the target, in float64 squared L2."""
    features = features.astype(np.float64)
    distances = ((features - features[shown]) ** 2).sum(axis=1)
    return int((distances < distances[target]).sum())


# ---------------------------------------------------------------------------- the checks
def check_observation(env: Any, observation: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """The observation lies in the single observation space and shows what the info says."""
    space = getattr(env, "single_observation_space", env.observation_space)  # a vector env's: one dialog's space
    assert space.contains(observation)
    np.testing.assert_array_equal(observation["image"], env.catalog.features[info["shown_index"]])
    assert observation["turn"].tolist() == [info["turn"]]
    assert isinstance(info["feedback_text"], str) and info["feedback_text"]
    tokens = env.vocabulary.encode(info["feedback_text"], env.max_feedback_tokens)
    np.testing.assert_array_equal(observation["feedback"], tokens)


def check_ranking(env: Any, info: dict[str, Any], target: int) -> None:
    num_images = env.catalog.num_images
    rank = info["target_rank"]
    assert 0 <= rank <= num_images - 1
    assert rank == brute_force_rank(env.catalog.features, info["shown_index"], target)
    assert 0.0 <= info["rank_percentile"] <= 1.0
    assert info["rank_percentile"] == 1.0 - rank / (num_images - 1) == rank_percentile(rank, num_images)
    assert info["is_success"] == (info["shown_index"] == target)


def check_reset(env: Any, observation: dict[str, np.ndarray], info: dict[str, Any], target: int) -> None:
    """A dialog's start: turn 0, a first image other than the target, and the checks of every turn."""
    assert info["turn"] == 0 and info["shown_index"] != target and not info["is_success"]
    check_ranking(env, info, target)
    check_observation(env, observation, info)


def check_step(
    env: Any,
    step: tuple,
    *,
    action: int,
    target: int,
    turn: int,
    previous_percentile: float,
    max_turns: int,
    reward_mode: str,
) -> None:
    """One step of a dialog against the env's definitions (rank, reward, episode end, observation)."""
    observation, reward, terminated, truncated, info = step
    assert info["shown_index"] == action and info["turn"] == turn
    check_ranking(env, info, target)
    assert terminated == (action == target) == info["is_success"]
    assert truncated == (not terminated and turn == max_turns)
    if terminated:
        assert info["target_rank"] == 0
    expected = {
        "percentile": info["rank_percentile"],
        "improvement": info["rank_percentile"] - previous_percentile,
        "success": 1.0 if terminated else 0.0,
    }[reward_mode]
    assert reward == expected
    check_observation(env, observation, info)


def dialog_of(result: tuple, i: int) -> tuple:
    """Dialog ``i`` of a vector env's ``reset`` or ``step`` result, shaped like a single env's."""
    *arrays, infos = result
    observation = {key: value[i] for key, value in arrays[0].items()}
    for key, value in infos.items():
        if key.startswith("_"):
            assert value[i], f"vector info {key} is False for dialog {i}"
    info = {key: value[i] for key, value in infos.items() if not key.startswith("_")}
    return (observation, *(array[i] for array in arrays[1:]), info)


def assert_same_dialog(vector: tuple, single: tuple, expose_target: bool) -> None:
    """A vector env's dialog equals a single env's result: observation, reward, ends and info."""
    vector_observation, *vector_values, vector_info = vector
    single_observation, *single_values, single_info = single
    assert vector_observation.keys() == single_observation.keys()
    for key, value in single_observation.items():
        assert vector_observation[key].dtype == value.dtype, key
        np.testing.assert_array_equal(vector_observation[key], value, err_msg=key)
    assert len(vector_values) == len(single_values)
    for vector_value, single_value in zip(vector_values, single_values):
        assert vector_value == single_value
    expected_info = dict(single_info)
    if not expose_target:
        expected_info.pop("target_index")
    assert vector_info.keys() == expected_info.keys()
    for key, value in expected_info.items():
        assert vector_info[key] == value, key


# ---------------------------------------------------------------------------- single environment
@settings(max_examples=150, deadline=None)
@given(
    catalogue=st.sampled_from(sorted(CATALOGUES)),
    split=st.sampled_from(["train", "test"]),
    user=st.sampled_from(sorted(USERS)),
    seed=st.integers(0, 2**31 - 1),
    reward_mode=st.sampled_from(REWARD_MODES),
    max_turns=st.integers(1, 5),
    codes=st.lists(ACTION_CODES, min_size=1, max_size=16),
)
def test_single_env_invariants(catalogue, split, user, seed, reward_mode, max_turns, codes):
    kwargs = env_kwargs(catalogue, split, user, reward_mode=reward_mode, max_turns=max_turns, expose_target=True)
    env = DialogRetrievalEnv(**kwargs)
    observation, info = env.reset(seed=seed)
    target = info["target_index"]
    check_reset(env, observation, info, target)
    turn, previous = 0, info["rank_percentile"]
    for code in codes:  # several episodes: a new one starts (same generator) when one ends
        action = action_of(code, target, env.catalog.num_images)
        step = env.step(action)
        turn += 1
        assert isinstance(step[1], float) and isinstance(step[2], bool) and isinstance(step[3], bool)
        check_step(env, step, action=action, target=target, turn=turn, previous_percentile=previous,
                   max_turns=max_turns, reward_mode=reward_mode)  # fmt: skip
        assert step[4]["target_index"] == target
        previous = step[4]["rank_percentile"]
        if step[2] or step[3]:
            observation, info = env.reset()
            target, turn, previous = info["target_index"], 0, info["rank_percentile"]
            check_reset(env, observation, info, target)


# ---------------------------------------------------------------------------- vector environment
@settings(max_examples=150, deadline=None)
@given(
    catalogue=st.sampled_from(sorted(CATALOGUES)),
    split=st.sampled_from(["train", "test"]),
    user=st.sampled_from(sorted(USERS)),
    num_envs=st.integers(1, MAX_ENVS),
    seed=st.integers(0, 2**31 - 1 - MAX_ENVS),
    reward_mode=st.sampled_from(REWARD_MODES),
    max_turns=st.integers(1, 4),
    expose_target=st.booleans(),
    codes=st.lists(st.lists(ACTION_CODES, min_size=MAX_ENVS, max_size=MAX_ENVS), min_size=1, max_size=14),
)
def test_vector_env_invariants_and_equality_with_single_envs(
    catalogue, split, user, num_envs, seed, reward_mode, max_turns, expose_target, codes
):
    settings_ = {"reward_mode": reward_mode, "max_turns": max_turns}
    vector = gym.make_vec("DialogRetrieval-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                          **env_kwargs(catalogue, split, user, expose_target=expose_target, **settings_))  # fmt: skip
    assert isinstance(vector, DialogRetrievalVectorEnv)
    # The reference: one single env per dialog, with the target exposed so that the test knows it.
    reference_kwargs = env_kwargs(catalogue, split, user, expose_target=True, **settings_)
    singles = [DialogRetrievalEnv(**reference_kwargs) for _ in range(num_envs)]
    num_images = vector.catalog.num_images

    result = vector.reset(seed=seed)
    assert vector.observation_space.contains(result[0])
    targets, turns, previous, ended = [], [0] * num_envs, [], [False] * num_envs
    for i, single in enumerate(singles):
        expected = single.reset(seed=seed + i)
        observation, info = dialog_of(result, i)
        targets.append(expected[1]["target_index"])
        previous.append(expected[1]["rank_percentile"])
        check_reset(vector, observation, info, targets[i])
        assert_same_dialog((observation, info), expected, expose_target)

    for step_codes in codes:
        actions = np.array([action_of(code, target, num_images) for code, target in zip(step_codes, targets)])
        result = vector.step(actions)
        observations, rewards, terminations, truncations, _ = result
        assert vector.observation_space.contains(observations)
        assert rewards.shape == terminations.shape == truncations.shape == (num_envs,)
        assert rewards.dtype == np.float64 and terminations.dtype == truncations.dtype == np.bool_
        for i, single in enumerate(singles):
            dialog = dialog_of(result, i)
            if ended[i]:  # NEXT_STEP autoreset: the action is ignored, the dialog starts again
                observation, info = single.reset()
                expected = (observation, 0.0, False, False, info)
                targets[i], turns[i], previous[i] = info["target_index"], 0, info["rank_percentile"]
                check_reset(vector, dialog[0], dialog[4], targets[i])
                assert dialog[1:4] == (0.0, False, False)
                ended[i] = False
                event("autoreset")
            else:
                expected = single.step(actions[i])
                turns[i] += 1
                check_step(vector, dialog, action=int(actions[i]), target=targets[i], turn=turns[i],
                           previous_percentile=previous[i], max_turns=max_turns, reward_mode=reward_mode)  # fmt: skip
                previous[i] = dialog[4]["rank_percentile"]
                ended[i] = bool(dialog[2] or dialog[3])
                event("terminated" if dialog[2] else "truncated" if dialog[3] else "ongoing")
            assert_same_dialog(dialog, expected, expose_target)


# ---------------------------------------------------------------------------- every autoreset mode
def assert_same_structure(native: Any, reference: Any, path: str = "result") -> None:
    """Identical values, types and dtypes, through tuples, dicts (``final_info``) and object arrays
    (``feedback_text``, ``final_obs``)."""
    if isinstance(reference, tuple):
        assert isinstance(native, tuple) and len(native) == len(reference), path
        for k, (value, expected) in enumerate(zip(native, reference)):
            assert_same_structure(value, expected, f"{path}[{k}]")
    elif isinstance(reference, dict):
        assert isinstance(native, dict) and native.keys() == reference.keys(), path
        for key, expected in reference.items():
            assert_same_structure(native[key], expected, f"{path}[{key!r}]")
    elif isinstance(reference, np.ndarray):
        assert isinstance(native, np.ndarray), path
        assert (native.dtype, native.shape) == (reference.dtype, reference.shape), path
        if reference.dtype == object:
            for k, (value, expected) in enumerate(zip(native, reference)):
                assert_same_structure(value, expected, f"{path}[{k}]")
        else:
            np.testing.assert_array_equal(native, reference, err_msg=path)
    else:
        assert type(native) is type(reference) and native == reference, path


def check_same_step_finals(result: tuple, ended: np.ndarray, max_turns: int) -> None:
    """``SAME_STEP``: the ended dialogs' last turn is in ``final_obs``/``final_info``, the returned
    entries are their new dialogs' first turn; nothing else is there."""
    observations, _, terminations, _, infos = result
    if not ended.any():
        assert not {"final_obs", "_final_obs", "final_info", "_final_info"} & infos.keys()
        return
    assert infos["_final_obs"].tolist() == infos["_final_info"].tolist() == ended.tolist()
    final_info = infos["final_info"]
    for i, is_ended in enumerate(ended):
        final = infos["final_obs"][i]
        if not is_ended:
            assert final is None and not any(final_info[key][i] for key in final_info if key.startswith("_"))
            continue
        assert observations["turn"][i].tolist() == [0] and infos["turn"][i] == 0
        assert final["turn"].tolist() == [final_info["turn"][i]] and 1 <= final_info["turn"][i] <= max_turns
        assert final_info["is_success"][i] == terminations[i]
        if terminations[i]:  # rank 0 without termination happens too: a duplicate of the target was shown
            assert final_info["target_rank"][i] == 0


@settings(max_examples=120, deadline=None)
@given(
    autoreset_mode=st.sampled_from([mode.value for mode in AutoresetMode]),
    catalogue=st.sampled_from(sorted(CATALOGUES)),
    split=st.sampled_from(["train", "test"]),
    user=st.sampled_from(sorted(USERS)),
    num_envs=st.integers(1, MAX_ENVS),
    seed=st.integers(0, 2**31 - 1 - MAX_ENVS),
    reward_mode=st.sampled_from(REWARD_MODES),
    max_turns=st.integers(1, 3),
    expose_target=st.booleans(),
    feedback_text_in_info=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.lists(ACTION_CODES, min_size=MAX_ENVS, max_size=MAX_ENVS),
            st.none() | st.lists(st.booleans(), min_size=MAX_ENVS, max_size=MAX_ENVS),  # an optional reset_mask
        ),
        min_size=1,
        max_size=12,
    ),
    step_an_ended_dialog=st.booleans(),
)
def test_vector_env_equals_sync_vector_env_in_every_autoreset_mode(
    autoreset_mode, catalogue, split, user, num_envs, seed, reward_mode, max_turns, expose_target,
    feedback_text_in_info, steps, step_an_ended_dialog,
):  # fmt: skip
    kwargs = env_kwargs(catalogue, split, user, reward_mode=reward_mode, max_turns=max_turns,
                        expose_target=expose_target, feedback_text_in_info=feedback_text_in_info)  # fmt: skip
    vector = gym.make_vec("DialogRetrieval-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                          autoreset_mode=autoreset_mode, **kwargs)  # fmt: skip
    reference = gym.make_vec("DialogRetrieval-v0", num_envs=num_envs, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": autoreset_mode}, **kwargs)  # fmt: skip
    assert isinstance(vector, DialogRetrievalVectorEnv) and isinstance(reference, SyncVectorEnv)
    assert vector.autoreset_mode is reference.autoreset_mode is AutoresetMode(autoreset_mode)
    assert vector.metadata["autoreset_mode"] is vector.autoreset_mode
    disabled = vector.autoreset_mode is AutoresetMode.DISABLED
    num_images = vector.catalog.num_images

    assert_same_structure(vector.reset(seed=seed), reference.reset(seed=seed))
    ended = np.zeros(num_envs, dtype=np.bool_)
    for step_codes, reset_codes in steps:
        if disabled and ended.any() and step_an_ended_dialog:
            # Stepping a dialog that ended: the native env raises, SyncVectorEnv fails its assert.
            with pytest.raises(ResetNeeded, match="reset_mask"):
                vector.step(np.zeros(num_envs, dtype=np.int64))
            with pytest.raises(AssertionError):
                reference.step(np.zeros(num_envs, dtype=np.int64))
            event("DISABLED: step of an ended dialog refused")
            return
        mask = np.array(reset_codes[:num_envs]) if reset_codes is not None else np.zeros(num_envs, dtype=np.bool_)
        if disabled:
            mask |= ended  # DISABLED: the user resets the ended dialogs
        if mask.any():
            # In every mode: a masked reset (of ended or running dialogs; in NEXT_STEP it also
            # cancels a pending autoreset).
            result = vector.reset(options={"reset_mask": mask})
            assert_same_structure(result, reference.reset(options={"reset_mask": mask.copy()}))
            assert vector.observation_space.contains(result[0])
            event(f"{autoreset_mode}: masked reset")
        # The targets, read from the reference's single envs, so that terminations happen.
        targets = [env.unwrapped._target for env in reference.envs]
        actions = np.array([action_of(code, target, num_images) for code, target in zip(step_codes, targets)])
        result = vector.step(actions)
        assert_same_structure(result, reference.step(actions))
        observations, rewards, terminations, truncations, infos = result
        assert vector.observation_space.contains(observations)
        assert rewards.dtype == np.float64 and terminations.dtype == truncations.dtype == np.bool_
        assert ("feedback_text" in infos) == feedback_text_in_info
        ended = terminations | truncations
        if vector.autoreset_mode is AutoresetMode.SAME_STEP:
            check_same_step_finals(result, ended, max_turns)
        else:
            assert "final_obs" not in infos
        event(f"{autoreset_mode}: {'ended' if ended.any() else 'ongoing'}")


# ---------------------------------------------------------------------------- the checks can fail
def _replace(step: tuple, *, observation: dict | None = None, info: dict | None = None, **values: Any) -> tuple:
    """``step`` with some observation entries, info entries, ``reward``, ``terminated`` or ``truncated`` replaced."""
    old_observation, reward, terminated, truncated, old_info = step
    new = {"reward": reward, "terminated": terminated, "truncated": truncated, **values}
    observation = {**old_observation, **(observation or {})}
    return observation, new["reward"], new["terminated"], new["truncated"], {**old_info, **(info or {})}


MUTATIONS = {
    "rank off by one": lambda s, n: _replace(s, info={"target_rank": (s[4]["target_rank"] + 1) % n}),
    "rank out of range": lambda s, n: _replace(s, info={"target_rank": n}),
    "percentile of rank + 1": lambda s, n: _replace(s, info={"rank_percentile": s[4]["rank_percentile"] - 1 / (n - 1)}),
    "percentile above 1": lambda s, n: _replace(s, info={"rank_percentile": 1.5}),
    "success flag": lambda s, n: _replace(s, info={"is_success": not s[4]["is_success"]}),
    "terminated flag": lambda s, n: _replace(s, terminated=not s[2]),
    "truncated flag": lambda s, n: _replace(s, truncated=not s[3]),
    "reward": lambda s, n: _replace(s, reward=s[1] + 0.25),
    "turn in info": lambda s, n: _replace(s, info={"turn": s[4]["turn"] + 1}),
    "turn in observation": lambda s, n: _replace(s, observation={"turn": s[0]["turn"] + 1}),
    "image": lambda s, n: _replace(s, observation={"image": s[0]["image"] + np.float32(0.5)}),
    "image outside the space": lambda s, n: _replace(s, observation={"image": s[0]["image"] + np.float32(1e6)}),
    "feedback tokens": lambda s, n: _replace(s, observation={"feedback": np.roll(s[0]["feedback"], 1)}),
    "feedback text": lambda s, n: _replace(s, info={"feedback_text": s[4]["feedback_text"] + " and red"}),
    "shown image": lambda s, n: _replace(s, info={"shown_index": (s[4]["shown_index"] + 1) % n}),
}


@pytest.mark.parametrize("reward_mode", REWARD_MODES)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_check_rejects_a_broken_step(mutation, reward_mode):
    """Real steps (ordinary, truncating, terminating) pass the checks; each mutated one fails them."""
    max_turns = 2
    env = DialogRetrievalEnv(
        **env_kwargs("seed0-n12-d4", "train", "rule", reward_mode=reward_mode, max_turns=max_turns, expose_target=True)
    )
    num_images = env.catalog.num_images
    for actions in (["other", "other"], ["other", "target"]):
        _, info = env.reset(seed=3)
        target, previous = info["target_index"], info["rank_percentile"]
        for turn, kind in enumerate(actions, start=1):
            action = target if kind == "target" else (target + 5) % num_images
            step = env.step(action)
            context = {"action": action, "target": target, "turn": turn, "previous_percentile": previous,
                       "max_turns": max_turns, "reward_mode": reward_mode}  # fmt: skip
            check_step(env, step, **context)
            broken = MUTATIONS[mutation](step, num_images)
            with pytest.raises(AssertionError):
                check_step(env, broken, **context)
            with pytest.raises(AssertionError):
                assert_same_dialog(broken, step, expose_target=True)
            previous = step[4]["rank_percentile"]


def test_the_equality_check_rejects_another_dialog_and_a_missing_target_flag():
    kwargs = env_kwargs("seed1-n12-d4", "train", "rule-noisy", expose_target=True)
    vector = gym.make_vec("DialogRetrieval-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    result = vector.reset(seed=7)
    single = DialogRetrievalEnv(**kwargs)
    assert_same_dialog(dialog_of(result, 0), single.reset(seed=7), expose_target=True)
    with pytest.raises(AssertionError):  # dialog 1 is seeded 8, not 7
        assert_same_dialog(dialog_of(result, 1), single.reset(seed=7), expose_target=True)
    with pytest.raises(AssertionError):  # target_index must be absent without expose_target
        assert_same_dialog(dialog_of(result, 0), single.reset(seed=7), expose_target=False)
    result[1]["_turn"][1] = False
    with pytest.raises(AssertionError):
        dialog_of(result, 1)


def test_the_structure_check_rejects_any_difference():
    kwargs = env_kwargs("seed1-n12-d4", "train", "rule-noisy", max_turns=1)
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=2, autoreset_mode="SameStep", **kwargs)
    envs.reset(seed=3)
    result = envs.step(np.array([1, 2]))
    assert "final_obs" in result[4]
    assert_same_structure(result, result)
    check_same_step_finals(result, result[2] | result[3], max_turns=1)
    mutations = [
        lambda r: (r[0], r[1].astype(np.float32), *r[2:]),  # dtype
        lambda r: (*r[:4], {**r[4], "extra": np.zeros(2)}),  # key
        lambda r: (*r[:4], {**r[4], "final_info": {**r[4]["final_info"], "turn": r[4]["final_info"]["turn"] + 1}}),
        lambda r: (*r[:4], {**r[4], "final_obs": np.array([None, r[4]["final_obs"][1]], dtype=object)}),
        lambda r: (*r[:4], {**r[4], "feedback_text": np.array(["x", "y"], dtype=object)}),
    ]
    for mutate in mutations:
        with pytest.raises(AssertionError):
            assert_same_structure(mutate(result), result)
    with pytest.raises(AssertionError):  # the final turn is not the returned one
        unchanged = {**result[4], "turn": result[4]["final_info"]["turn"]}
        check_same_step_finals((*result[:4], unchanged), result[2] | result[3], max_turns=1)
