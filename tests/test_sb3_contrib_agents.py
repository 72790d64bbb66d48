"""The sb3-contrib agents: maskable-ppo (no-repeat mask) and recurrent-ppo(-query) (LSTM state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from sb3_contrib import MaskablePPO, RecurrentPPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import dialog_env  # noqa: E402
from agents.base import Agent  # noqa: E402
from agents.evaluation import EpisodeSet, evaluate  # noqa: E402
from agents.registry import SB3_INDEX_AGENTS, SB3_QUERY_AGENTS, describe  # noqa: E402
from agents.sb3 import MODEL_SPECS, SB3Agent, load_model, make_model, make_training_env  # noqa: E402
from agents.sb3_vec import NativeDialogVecEnv  # noqa: E402
from dialog_env.catalog import Catalog  # noqa: E402
from dialog_env.errors import ConfigurationError  # noqa: E402
from dialog_env.ranking import Ranker  # noqa: E402
from dialog_env.wrappers import nearest_image  # noqa: E402

SMALL = {"num_train": 60, "num_test": 20, "dim": 8, "seed": 0}
TURNS = 3
TINY = {"n_steps": 64, "batch_size": 64, "n_epochs": 2}
CONTRIB_AGENTS = ("maskable-ppo", "recurrent-ppo", "recurrent-ppo-query")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return dialog_env.make_catalog(SMALL)


class MaskChecker(BaseCallback):
    """Asserts that every action MaskablePPO takes is allowed by the mask it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0

    def _on_step(self) -> bool:
        masks, actions = self.locals["action_masks"], np.asarray(self.locals["actions"])
        assert masks.shape == (self.training_env.num_envs, 60)
        assert masks[np.arange(actions.size), actions].all()
        self.checked += actions.size
        return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[Any, NativeDialogVecEnv, Any]]:
    """Each contrib agent trained for 256 steps, saved: ``agent -> (model, env, path)``."""
    folder = tmp_path_factory.mktemp("models")
    models = {}
    for agent in CONTRIB_AGENTS:
        env = make_training_env(agent, {"catalog": SMALL}, n_envs=2, seed=3, max_turns=TURNS)
        model = make_model(agent, env, seed=3, device="cpu", **TINY)
        checker = MaskChecker()
        model.learn(256, callback=checker if agent == "maskable-ppo" else None)
        if agent == "maskable-ppo":
            assert checker.checked >= 256  # every action of training was checked against its mask
        path = folder / f"{agent}.zip"
        model.save(path)
        models[agent] = (model, env, path)
    return models


def test_registry_and_model_specs(trained):
    assert {"maskable-ppo", "recurrent-ppo"} <= set(SB3_INDEX_AGENTS)
    assert "recurrent-ppo-query" in SB3_QUERY_AGENTS
    for agent, algorithm, policy in (
        ("maskable-ppo", MaskablePPO, "MultiInputPolicy"),
        ("recurrent-ppo", RecurrentPPO, "MultiInputLstmPolicy"),
        ("recurrent-ppo-query", RecurrentPPO, "MultiInputLstmPolicy"),
    ):
        spec = MODEL_SPECS[agent]
        assert spec.algorithm is algorithm and spec.policy == policy and describe(agent).needs_sb3
        model, env, _ = trained[agent]
        assert isinstance(model, algorithm) and isinstance(env, NativeDialogVecEnv)
        assert env.action_kind == spec.action and model.num_timesteps >= 256
    lstm = trained["recurrent-ppo"][0].policy.lstm_actor
    assert lstm.hidden_size == 64  # the project's default, not sb3-contrib's 256


@pytest.mark.parametrize("agent", CONTRIB_AGENTS)
def test_save_and_load_without_unpickling_give_the_same_actions(trained, agent, observation_batch):
    model, env, path = trained[agent]
    loaded = load_model(agent, path, env, device="cpu")
    assert type(loaded) is type(model)
    single = dialog_env.DialogRetrievalEnv(catalog=SMALL, max_turns=TURNS)
    observations = observation_batch(single, 6)
    if agent == "maskable-ppo":
        masks = np.ones((6, 60), dtype=np.bool_)
        masks[:, :30] = False
        first, _ = model.predict(observations, deterministic=True, action_masks=masks)
        again, _ = loaded.predict(observations, deterministic=True, action_masks=masks)
        assert (first >= 30).all()
    else:
        starts = np.array([True, False, True, False, False, True])
        first, state = model.predict(observations, deterministic=True, episode_start=starts)
        again, loaded_state = loaded.predict(observations, deterministic=True, episode_start=starts)
        for mine, theirs in zip(state, loaded_state):
            np.testing.assert_allclose(mine, theirs)
    np.testing.assert_array_equal(first, again)


def test_maskable_ppo_needs_an_env_with_masks():
    with pytest.raises(ConfigurationError, match="needs an environment with action_masks"):
        make_model("maskable-ppo", DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    # The single env has the mask too, so SB3's own wrapping (DummyVecEnv) works.
    model = make_model("maskable-ppo", dialog_env.DialogRetrievalEnv(catalog=SMALL, max_turns=TURNS), device="cpu")
    assert isinstance(model, MaskablePPO)


class Recorder(Agent):
    """Delegates to an agent and records, per dialog, the images actually shown."""

    def __init__(self, inner: Agent, max_turns: int) -> None:
        self.inner, self.name, self.max_turns = inner, inner.name, max_turns
        self.episodes: list[list[int]] = []

    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        self.inner.reset(catalog, num_dialogs)
        self.current: list[list[int]] = [[] for _ in range(num_dialogs)]

    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        actions = self.inner.act(observations, infos)
        turns = np.asarray(observations["turn"])[:, 0]
        for i, action in enumerate(actions):
            if turns[i] == 0:
                self.current[i] = [int(infos["shown_index"][i])]
                self.episodes.append(self.current[i])
            ended = bool(infos["is_success"][i]) or turns[i] >= self.max_turns
            if not ended:  # an ended dialog's action is ignored (the next step resets it)
                self.current[i].append(int(action))
        return actions


@pytest.mark.parametrize("split", ["test", "train"])
def test_maskable_agent_never_shows_an_image_twice_in_evaluation(trained, catalog, split):
    model, _, _ = trained["maskable-ppo"]
    turns = 6  # longer than training's dialogs: more chances to repeat
    agent = Recorder(SB3Agent(model, "maskable-ppo", action_catalog=catalog.select("train")), turns)
    num_images = catalog.select(split).num_images
    episodes = EpisodeSet.draw(num_images, 16, seed=5)
    result = evaluate(agent, episodes, {"catalog": SMALL, "split": split}, max_turns=turns, batch_size=8)
    assert result.success.shape == (16, turns) and len(agent.episodes) >= 16
    for shown in agent.episodes:
        assert len(shown) == len(set(shown)), shown


def test_maskable_agent_masks_training_images_whose_nearest_test_image_was_shown(trained, catalog):
    model, _, _ = trained["maskable-ppo"]
    train, test = catalog.select("train"), catalog.select("test")
    agent = SB3Agent(model, "maskable-ppo", action_catalog=train)
    agent.reset(test, 2)
    images = nearest_image(Ranker(test.features, test.squared_norms), train.features)
    np.testing.assert_array_equal(agent._images_of_actions, images)
    infos = {"shown_index": np.array([images[0], 3])}
    masks = agent.action_masks(np.array([True, True]), infos)
    assert masks.shape == (2, 60) and masks.dtype == np.bool_
    np.testing.assert_array_equal(masks[0], images != images[0])
    np.testing.assert_array_equal(masks[1], images != 3)
    # Every reachable test image shown: the mask is lifted rather than leaving no action.
    agent._shown[0, np.unique(images)] = True
    masks = agent.action_masks(np.array([False, False]), {})
    assert masks[0].all() and not masks[1].all()
    # A new dialog forgets the old one's images.
    assert agent.action_masks(np.array([True, False]), {})[0].all()


@pytest.mark.parametrize("agent_name", ["recurrent-ppo", "recurrent-ppo-query"])
def test_recurrent_agent_carries_its_lstm_state_across_turns(trained, catalog, agent_name):
    model, _, _ = trained[agent_name]
    test = catalog.select("test")
    agent = SB3Agent(model, agent_name, action_catalog=catalog.select("train"))
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=3, catalog=SMALL, split="test", max_turns=TURNS,
                        vectorization_mode="vector_entry_point")  # fmt: skip
    observations, infos = envs.reset(seed=1, options={"target": np.array([0, 1, 2]), "initial": np.array([3, 4, 5])})
    agent.reset(test, 3)
    state = None
    for turn in range(TURNS):
        shown = agent.act(observations, infos)
        starts = observations["turn"][:, 0] == 0
        assert starts.all() == (turn == 0)
        expected, state = model.predict(observations, state=state, episode_start=starts, deterministic=True)
        for mine, theirs in zip(agent._lstm_states, state):
            np.testing.assert_allclose(mine, theirs)
        if agent_name == "recurrent-ppo-query":
            ranker = Ranker(test.features, test.squared_norms)
            np.testing.assert_array_equal(shown, nearest_image(ranker, expected.astype(np.float32)))
            assert agent.rank_targets(np.array([0, 1, 2])).shape == (3,)
        observations, _, _, _, infos = envs.step(shown)
    result = evaluate(agent, EpisodeSet.draw(test.num_images, 10, seed=2), {"catalog": SMALL, "split": "test"},
                      max_turns=TURNS)  # fmt: skip
    assert result.success.shape == (10, TURNS)
    assert (result.ranking_percentile is not None) == (agent_name == "recurrent-ppo-query")
    envs.close()
