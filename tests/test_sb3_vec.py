"""NativeDialogVecEnv: SB3's VecEnv over the native vector env equals DummyVecEnv over single envs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from agents.sb3_vec import NativeDialogVecEnv  # noqa: E402
from dialog_env.env import DialogRetrievalEnv  # noqa: E402
from dialog_env.errors import ConfigurationError, InvalidActionError  # noqa: E402
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402
from dialog_env.wrappers import QueryAction  # noqa: E402

CATALOG = make_synthetic_shoes(num_train=60, num_test=20, dim=8, seed=4)
KWARGS = {"catalog": CATALOG, "max_turns": 3, "user_kwargs": {"vague_rate": 0.2, "mistake_rate": 0.2}}


def dummy(n_envs: int, action: str) -> DummyVecEnv:
    def make():
        env = Monitor(DialogRetrievalEnv(**KWARGS))
        return QueryAction(env) if action == "query" else env

    return DummyVecEnv([make for _ in range(n_envs)])


def assert_same_infos(native: list[dict], reference: list[dict]) -> None:
    assert len(native) == len(reference)
    for mine, theirs in zip(native, reference):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            if key == "episode":
                assert {k: v for k, v in mine[key].items() if k != "t"} == {k: v for k, v in value.items() if k != "t"}
            elif key == "terminal_observation":
                assert mine[key].keys() == value.keys()
                for part in value:
                    np.testing.assert_array_equal(mine[key][part], value[part])
            else:
                assert mine[key] == value and type(mine[key]) is type(value), key


@pytest.mark.parametrize("action", ["index", "query"])
def test_transitions_equal_dummy_vec_env_over_single_envs(action):
    n_envs = 4
    native, reference = NativeDialogVecEnv(n_envs, action=action, **KWARGS), dummy(n_envs, action)
    native.seed(11)
    reference.seed(11)
    observations = native.reset()
    expected = reference.reset()
    rng = np.random.default_rng(0)
    dones_seen = 0
    for step in range(40):
        for key in expected:
            np.testing.assert_array_equal(observations[key], expected[key])
            assert observations[key].dtype == expected[key].dtype
        assert_same_infos(native.reset_infos, reference.reset_infos)
        if action == "index":
            actions = rng.integers(CATALOG.select("train").num_images, size=n_envs)
            # Show the target now and then, so that terminations happen too.
            if step % 3 == 0:
                actions[0] = native.envs._targets[0]
        else:
            actions = rng.normal(size=(n_envs, CATALOG.dim)).astype(np.float32)
        native.step_async(actions)
        reference.step_async(actions)
        observations, rewards, dones, infos = native.step_wait()
        expected, expected_rewards, expected_dones, expected_infos = reference.step_wait()
        np.testing.assert_array_equal(rewards, expected_rewards)
        assert rewards.dtype == expected_rewards.dtype
        np.testing.assert_array_equal(dones, expected_dones)
        assert_same_infos(infos, expected_infos)
        dones_seen += int(dones.sum())
    assert dones_seen > 10  # autoresets were compared, not only running dialogs


def test_passes_sb3_checks_and_trains_ppo():
    envs = NativeDialogVecEnv(8, **KWARGS)
    check_env(DialogRetrievalEnv(**KWARGS))  # the single env SB3 checks; the VecEnv shares its spaces
    assert envs.observation_space == DialogRetrievalEnv(**KWARGS).observation_space
    assert envs.action_space == DialogRetrievalEnv(**KWARGS).action_space
    model = PPO("MultiInputPolicy", envs, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    assert model.num_timesteps == 128
    assert len(model.ep_info_buffer) > 0 and all("r" in info and "l" in info for info in model.ep_info_buffer)


def test_bad_arguments_and_actions_are_refused():
    with pytest.raises(ConfigurationError, match="action must be one of"):
        NativeDialogVecEnv(2, action="vector", **KWARGS)
    with pytest.raises(ConfigurationError, match="sets 'autoreset_mode' itself"):
        NativeDialogVecEnv(2, autoreset_mode="NextStep", **KWARGS)
    envs = NativeDialogVecEnv(2, action="query", **KWARGS)
    envs.reset()
    with pytest.raises(InvalidActionError, match=r"shape \(2, 8\)"):
        envs.step(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(InvalidActionError, match="finite"):
        envs.step(np.full((2, 8), np.nan, dtype=np.float32))
    with pytest.raises(ConfigurationError, match="not supported"):
        envs.set_attr("max_turns", 5)
    assert envs.get_attr("max_turns") == [3, 3] and envs.env_is_wrapped(Monitor) == [False, False]


def test_sb3_speed_benchmark_quick(tmp_path):
    import json

    from benchmarks.sb3_speed import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "sb3_speed.json").read_text())
    assert [(row["agent"], row["n_envs"]) for row in report["rows"]] == [
        ("ppo", 2), ("ppo", 4), ("ppo-query", 2), ("ppo-query", 4)
    ]
    for row in report["rows"]:
        assert row["speedup_median"] > 0
        for kind in ("native", "dummy"):
            cell = row[kind]
            assert cell["timesteps"] >= 64 and cell["steps_per_s"] > 0
            assert cell["env_s"] + cell["update_s"] <= cell["wall_s"]
    assert "| agent | n_envs | env | steps/s |" in (tmp_path / "sb3_speed.md").read_text()
