from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import dialog_env
from dialog_env import DialogRetrievalEnv
from dialog_env.catalog import Catalog
from dialog_env.errors import CatalogError, ConfigurationError, InvalidActionError, ResetNeeded, UserSimulatorError
from dialog_env.ranking import rank_percentile

SMALL = {"num_train": 300, "num_test": 100, "dim": 32, "seed": 7}


def make(**kwargs):
    return gym.make("DialogRetrieval-v0", catalog=kwargs.pop("catalog", SMALL), **kwargs)


def rollout(env, seed, actions):
    observation, info = env.reset(seed=seed)
    trace = [(observation, info)]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((observation, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return trace


def assert_traces_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                for key in u:
                    np.testing.assert_array_equal(u[key], v[key])
            else:
                assert u == v


def test_registered_env_passes_gymnasium_and_sb3_checkers():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(render_mode="ansi")
    gym_check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(make().unwrapped, warn=True)


def test_default_env_spaces():
    env = gym.make("DialogRetrieval-v0")
    assert env.action_space.n == 10_000
    observation, info = env.reset(seed=0)
    assert observation["feedback"].shape == (16,) and observation["feedback"].dtype == np.int64
    assert observation["image"].shape == (256,) and observation["image"].dtype == np.float32
    assert observation["turn"].tolist() == [0]
    assert env.observation_space.contains(observation)
    assert gym.make("DialogRetrieval-v0", split="test").action_space.n == 4_658


def test_make_without_prior_import():
    code = (
        "import gymnasium as gym; "
        "env = gym.make('dialog_env:DialogRetrieval-v0', catalog={'num_train': 20, 'num_test': 5, 'dim': 4}); "
        "print(env.reset(seed=0)[1]['turn'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_same_seed_same_actions_same_rollout():
    actions = list(np.random.default_rng(0).integers(300, size=10))
    assert_traces_equal(rollout(make(), 3, actions), rollout(make(), 3, actions))
    assert rollout(make(), 3, actions)[0][1]["shown_index"] != rollout(make(), 4, actions)[0][1]["shown_index"] or (
        rollout(make(), 3, actions)[0][1]["feedback_text"] != rollout(make(), 4, actions)[0][1]["feedback_text"]
    )


def test_pickle_round_trip_continues_identically():
    env = make(user_kwargs={"vague_rate": 0.2})
    env.reset(seed=5)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    for action in (2, 3, 4):
        a = env.step(action)
        b = clone.step(action)
        assert a[1:4] == b[1:4] and a[4] == b[4]
        np.testing.assert_array_equal(a[0]["feedback"], b[0]["feedback"])


def test_reset_options_fix_target_and_initial():
    env = make(expose_target=True)
    observation, info = env.reset(seed=0, options={"target": 17, "initial": 4})
    assert info["target_index"] == 17 and info["shown_index"] == 4
    np.testing.assert_array_equal(observation["image"], env.unwrapped.catalog.features[4])
    observation, reward, terminated, truncated, info = env.step(17)
    assert terminated and not truncated and info["is_success"] and info["target_rank"] == 0 and reward == 1.0
    with pytest.raises(ConfigurationError, match="must differ"):
        env.reset(options={"target": 3, "initial": 3})
    with pytest.raises(ConfigurationError, match="'target'.*0..299"):
        env.reset(options={"target": 300})
    with pytest.raises(ConfigurationError, match="unknown reset option"):
        env.reset(options={"goal": 1})


def test_initial_image_is_never_the_target():
    env = make(catalog={"num_train": 2, "num_test": 1, "dim": 4}, expose_target=True)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert info["shown_index"] != info["target_index"]


def test_info_rank_matches_ranker_and_percentile():
    env = make(expose_target=True)
    _, info = env.reset(seed=1)
    ranker = env.unwrapped.ranker
    for action in (5, 6, 7):
        _, reward, _, _, info = env.step(action)
        rank = ranker.target_ranks(np.array([action]), np.array([info["target_index"]]))[0]
        assert info["target_rank"] == rank
        assert info["rank_percentile"] == pytest.approx(rank_percentile(rank, 300)) == reward
        assert info["turn"] == action - 4 and not info["is_success"]
        assert "target_index" in info


def test_target_index_hidden_by_default():
    _, info = make().reset(seed=0)
    assert "target_index" not in info
    assert set(info) == {"target_rank", "rank_percentile", "is_success", "feedback_text", "shown_index", "turn"}


@pytest.mark.parametrize("mode", ["percentile", "improvement", "success"])
def test_reward_modes(mode):
    env = make(reward_mode=mode, expose_target=True, max_turns=4)
    _, info = env.reset(seed=2)
    previous = info["rank_percentile"]
    target = info["target_index"]
    actions = [a for a in range(10) if a != target][:3] + [target]
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        expected = {
            "percentile": info["rank_percentile"],
            "improvement": info["rank_percentile"] - previous,
            "success": float(action == target),
        }[mode]
        assert reward == pytest.approx(expected)
        previous = info["rank_percentile"]
    assert terminated and not truncated


def test_truncation_after_max_turns_and_step_after_end():
    env = make(max_turns=3, expose_target=True)
    _, info = env.reset(seed=0)
    target = info["target_index"]
    non_targets = [a for a in range(5) if a != target]
    results = [env.step(a) for a in non_targets[:3]]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)
    assert results[-1][0]["turn"].tolist() == [3]
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step(0)
    with pytest.raises(ResetNeeded):
        DialogRetrievalEnv(catalog=SMALL).step(0)


@pytest.mark.parametrize("action", [-1, 300, 2.0, "3", np.array([1, 2]), True, np.float32(1)])
def test_bad_actions_name_the_valid_range(action):
    env = make()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="0..299"):
        env.step(action)


def test_integer_like_actions_are_accepted():
    env = make()
    env.reset(seed=0)
    for action in (np.int64(3), np.array(4), np.array([5]), 6):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"reward_mode": "rank"}, ConfigurationError, "unknown reward_mode 'rank'"),
        ({"split": "val"}, ConfigurationError, "unknown split 'val'.*\\['test', 'train'\\]"),
        ({"user": "robot"}, ConfigurationError, "unknown user simulator 'robot'"),
        ({"max_turns": 0}, ConfigurationError, "max_turns must be an integer >= 1"),
        ({"render_mode": "rgb"}, ConfigurationError, "unknown render_mode 'rgb'.*'rgb_array'"),
        ({"expose_target": "yes"}, ConfigurationError, "expose_target must be a bool .*got 'yes' of type str"),
        ({"expose_target": 1}, ConfigurationError, "expose_target must be a bool .*got 1 of type int"),
        ({"feedback_text_in_info": "no"}, ConfigurationError, "feedback_text_in_info must be a bool .*got 'no'"),
        ({"user_kwargs": ["vague_rate", 0.2]}, ConfigurationError, "user_kwargs must be .*'rule'.*list"),
        ({"user_kwargs": "vague_rate=0.2"}, ConfigurationError, "user_kwargs must be None or a mapping .*of type str"),
        ({"user_kwargs": {1: 0.2}}, ConfigurationError, "user_kwargs must be None or a mapping .*got \\{1: 0.2\\}"),
        ({"catalog": 3}, ConfigurationError, "catalog must be"),
        ({"catalog": {"colour": 1}}, ConfigurationError, "unknown synthetic catalogue settings"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"catalog": SMALL, **kwargs}
    with pytest.raises(error, match=message):
        DialogRetrievalEnv(**arguments)


def test_split_with_fewer_than_two_images(tiny_catalog):
    catalog = Catalog(tiny_catalog.features, tiny_catalog.ids, {"train": [0, 1, 2, 3, 4], "test": [5]})
    with pytest.raises(CatalogError, match="at least 2"):
        DialogRetrievalEnv(catalog=catalog, split="test", user=FakeUser())


def test_rule_user_needs_shoe_attributes(tiny_catalog):
    with pytest.raises(UserSimulatorError, match="lacks"):
        DialogRetrievalEnv(catalog=tiny_catalog)


class FakeUser(dialog_env.UserSimulator):
    """Says the target's index: lets tests see exactly what the user was asked."""

    name = "fake"

    @property
    def vocabulary(self):
        return dialog_env.Vocabulary([str(i) for i in range(10)] + ["target"])

    def describe(self, catalog, targets, shown, rngs):
        return [f"target {t}" for t in targets]


def test_any_catalog_and_user(tmp_path, tiny_catalog):
    path = tiny_catalog.save(tmp_path / "tiny.h5")
    env = gym.make("DialogRetrieval-v0", catalog=str(path), split="train", user=FakeUser(), expose_target=True)
    observation, info = env.reset(seed=0)
    assert info["feedback_text"] == f"target {info['target_index']}"
    assert env.action_space.n == 4 and observation["image"].shape == (3,)
    assert env.unwrapped.vocabulary.decode(observation["feedback"]) == info["feedback_text"]


def test_render_modes(capsys):
    env = make(render_mode="ansi", expose_target=True)
    _, info = env.reset(seed=0)
    env.step(info["target_index"])
    text = env.render()
    assert text.count("\n") == 2 and "turn  0" in text and "target found" in text
    assert env.unwrapped.catalog.ids[info["target_index"]] in text
    human = make(render_mode="human")
    human.reset(seed=0)
    human.step(1)
    printed = capsys.readouterr().out
    assert "turn  0" in printed and "turn  1" in printed


def test_model_access_for_planning():
    env = make().unwrapped
    env.reset(seed=0)
    catalog, user, ranker = env.catalog, env.user, env.ranker
    feedback = user.describe(catalog, np.array([1, 2]), np.array([3, 4]), [np.random.default_rng(0)] * 2)
    assert len(feedback) == 2 and all(isinstance(f, str) for f in feedback)
    assert ranker.num_images == catalog.num_images == env.action_space.n


def test_stable_baselines3_multi_input_policy_learns_a_few_steps():
    from stable_baselines3 import PPO

    env = make(catalog={"num_train": 40, "num_test": 10, "dim": 8, "seed": 0}, max_turns=4)
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    observation, _ = env.reset(seed=0)
    action, _ = model.predict(observation, deterministic=True)
    assert env.action_space.contains(int(action))


def test_feedback_text_in_info_false_keeps_every_info_value_numeric():
    env = make(feedback_text_in_info=False, expose_target=True, render_mode="ansi")
    reference = make(expose_target=True)
    observation, info = env.reset(seed=3)
    expected_observation, expected_info = reference.reset(seed=3)
    assert expected_info.pop("feedback_text") in env.render()  # the caption is still in the transcript
    assert info == expected_info and all(isinstance(value, (bool, int, float)) for value in info.values())
    np.testing.assert_array_equal(observation["feedback"], expected_observation["feedback"])
    step, expected = env.step(5), reference.step(5)
    assert "feedback_text" not in step[4] and step[1:4] == expected[1:4]


def test_vector_env_shares_the_constructor_validation():
    for kwargs, message in (({"expose_target": "yes"}, "expose_target must be a bool"),
                            ({"user_kwargs": ["a"]}, "user_kwargs must be None or a mapping")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=message):
            dialog_env.DialogRetrievalVectorEnv(num_envs=2, catalog=SMALL, **kwargs)
    assert dialog_env.DialogRetrievalEnv(catalog=SMALL, expose_target=np.bool_(True)).expose_target is True
