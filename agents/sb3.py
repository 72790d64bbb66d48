"""Stable-Baselines3 baselines for ``DialogRetrieval-v0``.

Six agents, named as on ``train_agent.py``'s command line:

| agent | algorithm | action | environment |
| --- | --- | --- | --- |
| ``ppo``, ``a2c``, ``dqn`` | PPO, A2C, DQN | ``Discrete(N)``: a catalogue index | ``DialogRetrievalEnv`` |
| ``ppo-query``, ``sac-query``, ``td3-query`` | PPO, SAC, TD3 | ``Box(D)``: a query vector | ``QueryAction(DialogRetrievalEnv)`` |

Every policy is SB3's ``MultiInputPolicy`` with :class:`DialogFeaturesExtractor` as its features
extractor (passed through ``policy_kwargs``). :class:`SB3Agent` adapts a trained model to the
:class:`~agents.base.Agent` protocol, so that it is evaluated by :func:`agents.evaluation.evaluate`
exactly like every other agent.

**Train split vs evaluation split.** Models are trained on the ``train`` split and evaluated on
the ``test`` split, which holds *other* images (10,000 vs 4,658 in the default catalogue).
A query agent's action, a point in feature space, means the same thing on both splits: the
evaluation shows the test image nearest to the query, with the same function as the training
wrapper (:func:`dialog_env.wrappers.nearest_image`). A catalogue-index agent's action names a
*training* image; index ``i`` of the test split is an unrelated image, and most training indices
do not exist there. :class:`SB3Agent` therefore reads an index action as "show an image like
training image ``i``": it takes that image's features as a query and shows the nearest test
image, through the same ``nearest_image``. On the split the model was trained on (same image
ids) this is the identity. The index agents thus never see test images during training and are
never evaluated on the training split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.base import Agent
from dialog_env.catalog import Catalog
from dialog_env.env import DialogRetrievalEnv, make_catalog
from dialog_env.errors import ConfigurationError, DependencyNotInstalled

try:
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
except ImportError as error:  # an optional dependency (setup.cfg extra "sb3")
    raise DependencyNotInstalled(
        f'the Stable-Baselines3 agents need stable-baselines3: pip install "dialog-retrieval-env[sb3]" ({error})'
    ) from error
from dialog_env.ranking import Ranker
from dialog_env.wrappers import QueryAction, nearest_image

__all__ = [
    "DialogFeaturesExtractor",
    "INDEX_AGENTS",
    "ProgressCallback",
    "QUERY_AGENTS",
    "SB3_AGENTS",
    "SB3Agent",
    "load_model",
    "make_a2c",
    "make_dqn",
    "make_model",
    "make_ppo",
    "make_sac",
    "make_td3",
    "make_training_env",
]

#: Agents whose action is a catalogue index (``Discrete(N)``).
INDEX_AGENTS = ("ppo", "a2c", "dqn")
#: Agents whose action is a query vector (``Box(D)``, through :class:`QueryAction`).
QUERY_AGENTS = ("ppo-query", "sac-query", "td3-query")
#: Every Stable-Baselines3 agent.
SB3_AGENTS = INDEX_AGENTS + QUERY_AGENTS

_OBSERVATION_KEYS = ("feedback", "image", "turn")


# ---------------------------------------------------------------------------- features extractor
class DialogFeaturesExtractor(BaseFeaturesExtractor):
    """Encodes the environment's ``Dict`` observation into one feature vector.

    - ``feedback`` ``(B, L)`` token ids (padding id 0): word embeddings (the padding embedding is
      zero and never trained), a 1-D convolution over the tokens, ReLU, and a max-pool over the
      positions of real tokens only. The result does not depend on how much padding follows the
      caption (an all-padding caption encodes to zeros).
    - ``image`` ``(B, D)`` float32 features: a one-hidden-layer MLP with ReLU.
    - ``turn`` ``(B, 1)``: divided by the space's upper bound (``max_turns``), so in ``[0, 1]``.

    The sizes come from the observation space: the vocabulary size ``V`` is the ``feedback``
    space's upper bound plus one, ``D`` the ``image`` space's shape; the output size is
    ``features_dim = text_dim + image_dim + 1``.

    Args:
        observation_space: the environment's ``Dict`` space with keys ``feedback`` (``Box``,
            shape ``(L,)``), ``image`` (``Box``, shape ``(D,)``) and ``turn`` (``Box``, shape ``(1,)``).
        word_dim: word embedding size.
        text_dim: convolution channels, the size of the caption encoding.
        kernel_size: convolution width in tokens (odd, so that positions keep their place).
        image_dim: hidden size of the image MLP, the size of the image encoding.

    Raises:
        ConfigurationError: another observation space, or non-positive / even sizes.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        word_dim: int = 32,
        text_dim: int = 64,
        kernel_size: int = 3,
        image_dim: int = 64,
    ) -> None:
        _check_observation_space(observation_space)
        for name, value in (("word_dim", word_dim), ("text_dim", text_dim), ("image_dim", image_dim), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
        if kernel_size % 2 == 0:
            raise ConfigurationError(f"kernel_size must be odd (positions keep their place), got {kernel_size}")
        super().__init__(observation_space, features_dim=text_dim + image_dim + 1)
        feedback_space = observation_space["feedback"]
        image_space = observation_space["image"]
        self.vocab_size = int(np.max(feedback_space.high)) + 1
        self.max_turns = max(1.0, float(np.max(observation_space["turn"].high)))
        self.embedding = nn.Embedding(self.vocab_size, word_dim, padding_idx=0)
        self.conv = nn.Conv1d(word_dim, text_dim, kernel_size, padding=kernel_size // 2)
        self.image_mlp = nn.Sequential(nn.Linear(int(image_space.shape[0]), image_dim), nn.ReLU())

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encode a batch.

        Args:
            observations: ``feedback (B, L)`` token ids (SB3 passes them as floats), ``image
                (B, D)`` float32, ``turn (B, 1)``.

        Returns:
            ``(B, features_dim)`` float32 features.
        """
        tokens = observations["feedback"].round().long().clamp(0, self.vocab_size - 1)
        mask = (tokens != 0).unsqueeze(1)  # (B, 1, L)
        words = self.embedding(tokens).transpose(1, 2)  # (B, word_dim, L)
        channels = torch.relu(self.conv(words))  # (B, text_dim, L), >= 0
        # Zeroing padded positions before the max is the masked max, because ReLU outputs are
        # >= 0; a caption without tokens encodes to zeros.
        text = (channels * mask).amax(dim=2)
        image = self.image_mlp(observations["image"].float())
        turn = observations["turn"].float() / self.max_turns
        return torch.cat([text, image, turn], dim=1)


def _check_observation_space(observation_space: Any) -> None:
    if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != set(_OBSERVATION_KEYS):
        found = list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else type(observation_space).__name__
        raise ConfigurationError(
            f"DialogFeaturesExtractor needs the DialogRetrieval Dict observation with keys {list(_OBSERVATION_KEYS)}, got {found}"
        )
    for key, rank in (("feedback", 1), ("image", 1), ("turn", 1)):
        space = observation_space[key]
        if not isinstance(space, spaces.Box) or len(space.shape) != rank:
            raise ConfigurationError(f"observation {key!r} must be a 1-D Box, got {space}")
    if observation_space["turn"].shape != (1,):
        raise ConfigurationError(f"observation 'turn' must have shape (1,), got {observation_space['turn'].shape}")


def default_policy_kwargs(net_arch: list[int] | dict[str, list[int]] | None = None) -> dict[str, Any]:
    """``policy_kwargs`` with :class:`DialogFeaturesExtractor` and its default sizes.

    Args:
        net_arch: SB3's ``net_arch`` after the extractor (``None``: 64-64 for every algorithm).
    """
    return {
        "features_extractor_class": DialogFeaturesExtractor,
        "features_extractor_kwargs": {"word_dim": 32, "text_dim": 64, "kernel_size": 3, "image_dim": 64},
        "net_arch": [64, 64] if net_arch is None else net_arch,
    }


# ---------------------------------------------------------------------------- environments
def make_training_env(
    agent: str,
    env_kwargs: Mapping[str, Any] | None = None,
    n_envs: int = 4,
    seed: int = 0,
    max_turns: int = 5,
) -> VecEnv:
    """The SB3 vector environment an agent trains on: ``n_envs`` monitored single environments.

    Index agents get ``DialogRetrievalEnv`` itself, query agents ``QueryAction`` around it. The
    catalogue is resolved once and shared by the ``n_envs`` environments. Environment ``i`` is
    seeded with ``seed + i`` at its first reset.

    Args:
        agent: one of :data:`SB3_AGENTS`.
        env_kwargs: arguments of :class:`~dialog_env.env.DialogRetrievalEnv` (``catalog``,
            ``split``, ``user``, ``reward_mode``...); not ``max_turns`` or ``expose_target``.
        n_envs: environments stepped together (``DummyVecEnv``).
        seed: seed of the first resets.
        max_turns: turns per training dialog.

    Raises:
        ConfigurationError: unknown agent, ``n_envs < 1`` or reserved ``env_kwargs``.
    """
    _check_agent(agent)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ConfigurationError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    env_kwargs = dict(env_kwargs or {})
    for reserved in ("max_turns", "expose_target"):
        if reserved in env_kwargs:
            raise ConfigurationError(f"make_training_env() sets {reserved!r} itself; remove it from env_kwargs")
    env_kwargs["catalog"] = make_catalog(env_kwargs.get("catalog"))
    query = agent in QUERY_AGENTS

    def make_one() -> gym.Env:
        env: gym.Env = Monitor(DialogRetrievalEnv(max_turns=max_turns, **env_kwargs))
        return QueryAction(env) if query else env

    vec_env = DummyVecEnv([make_one for _ in range(n_envs)])
    vec_env.seed(seed)
    return vec_env


# ---------------------------------------------------------------------------- models
def make_ppo(
    env: VecEnv | gym.Env,
    learning_rate: float = 3e-4,
    n_steps: int = 256,
    batch_size: int = 256,
    n_epochs: int = 4,
    gamma: float = 0.9,
    gae_lambda: float = 0.95,
    clip_range: float = 0.2,
    ent_coef: float = 0.01,
    vf_coef: float = 0.5,
    max_grad_norm: float = 0.5,
    policy_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> PPO:
    """PPO with ``MultiInputPolicy`` on the index (``Discrete``) or the query (``Box``) action.

    Defaults differ from SB3's where the task asks: ``n_steps=256`` per environment and 4 epochs
    (short dialogs, CPU budgets of a few minutes), ``gamma=0.9`` (dialogs last 5-10 turns),
    ``ent_coef=0.01`` (keeps the policy over up to 10,000 images from collapsing early).
    ``policy_kwargs`` defaults to :func:`default_policy_kwargs`. See SB3's ``PPO`` for the rest.
    """
    return PPO(
        "MultiInputPolicy", env, learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs,
        gamma=gamma, gae_lambda=gae_lambda, clip_range=clip_range, ent_coef=ent_coef, vf_coef=vf_coef,
        max_grad_norm=max_grad_norm, policy_kwargs=policy_kwargs or default_policy_kwargs(),
        tensorboard_log=tensorboard_log, seed=seed, device=device, verbose=verbose,
    )  # fmt: skip


def make_a2c(
    env: VecEnv | gym.Env,
    learning_rate: float = 7e-4,
    n_steps: int = 8,
    gamma: float = 0.9,
    gae_lambda: float = 1.0,
    ent_coef: float = 0.01,
    vf_coef: float = 0.5,
    max_grad_norm: float = 0.5,
    policy_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> A2C:
    """A2C with ``MultiInputPolicy`` on the index action (SB3 defaults but ``n_steps=8``,
    ``gamma=0.9``, ``ent_coef=0.01``; see :func:`make_ppo` for why)."""
    return A2C(
        "MultiInputPolicy", env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma, gae_lambda=gae_lambda,
        ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm,
        policy_kwargs=policy_kwargs or default_policy_kwargs(), tensorboard_log=tensorboard_log, seed=seed,
        device=device, verbose=verbose,
    )  # fmt: skip


def make_dqn(
    env: VecEnv | gym.Env,
    learning_rate: float = 5e-4,
    buffer_size: int = 50_000,
    learning_starts: int = 1_000,
    batch_size: int = 64,
    gamma: float = 0.9,
    train_freq: int = 4,
    gradient_steps: int = 1,
    target_update_interval: int = 1_000,
    exploration_fraction: float = 0.3,
    exploration_final_eps: float = 0.05,
    policy_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> DQN:
    """DQN with ``MultiInputPolicy`` on the index action.

    ``buffer_size`` is 50,000 transitions rather than SB3's million: a transition holds two
    observations of ``16 * 8 + 4 D + 8`` bytes (about 1.2 kB at ``D = 256``), so a million would
    need about 2.4 GB. ``target_update_interval`` and ``learning_starts`` are scaled to budgets of
    tens of thousands of steps.
    """
    return DQN(
        "MultiInputPolicy", env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
        batch_size=batch_size, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
        target_update_interval=target_update_interval, exploration_fraction=exploration_fraction,
        exploration_final_eps=exploration_final_eps, policy_kwargs=policy_kwargs or default_policy_kwargs(),
        tensorboard_log=tensorboard_log, seed=seed, device=device, verbose=verbose,
    )  # fmt: skip


def make_sac(
    env: VecEnv | gym.Env,
    learning_rate: float = 3e-4,
    buffer_size: int = 50_000,
    learning_starts: int = 1_000,
    batch_size: int = 128,
    tau: float = 0.005,
    gamma: float = 0.9,
    train_freq: int = 1,
    gradient_steps: int = 1,
    ent_coef: str | float = "auto",
    policy_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> SAC:
    """SAC with ``MultiInputPolicy`` on the query action (``QueryAction``).

    SAC squashes its actions into the action box, the catalogue's feature range.
    ``buffer_size``: see :func:`make_dqn`.
    """
    _check_query_env(env, "SAC")
    return SAC(
        "MultiInputPolicy", env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
        batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
        ent_coef=ent_coef, policy_kwargs=policy_kwargs or default_policy_kwargs(), tensorboard_log=tensorboard_log,
        seed=seed, device=device, verbose=verbose,
    )  # fmt: skip


def make_td3(
    env: VecEnv | gym.Env,
    learning_rate: float = 1e-3,
    buffer_size: int = 50_000,
    learning_starts: int = 1_000,
    batch_size: int = 128,
    tau: float = 0.005,
    gamma: float = 0.9,
    train_freq: int = 1,
    gradient_steps: int = 1,
    policy_delay: int = 2,
    action_noise_scale: float = 0.1,
    target_policy_noise: float = 0.2,
    target_noise_clip: float = 0.5,
    policy_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> TD3:
    """TD3 with ``MultiInputPolicy`` on the query action (``QueryAction``).

    Exploration: Gaussian action noise with standard deviation ``action_noise_scale`` times half
    the width of the action box, per dimension. ``buffer_size``: see :func:`make_dqn`.
    """
    space = _check_query_env(env, "TD3")
    sigma = action_noise_scale * (space.high - space.low) / 2.0
    return TD3(
        "MultiInputPolicy", env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
        batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
        policy_delay=policy_delay, action_noise=NormalActionNoise(np.zeros_like(sigma), sigma),
        target_policy_noise=target_policy_noise, target_noise_clip=target_noise_clip,
        policy_kwargs=policy_kwargs or default_policy_kwargs(), tensorboard_log=tensorboard_log, seed=seed,
        device=device, verbose=verbose,
    )  # fmt: skip


_BUILDERS: dict[str, Callable[..., BaseAlgorithm]] = {
    "ppo": make_ppo, "a2c": make_a2c, "dqn": make_dqn, "ppo-query": make_ppo, "sac-query": make_sac, "td3-query": make_td3,
}  # fmt: skip
_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "a2c": A2C, "dqn": DQN, "ppo-query": PPO, "sac-query": SAC, "td3-query": TD3,
}  # fmt: skip


def make_model(agent: str, env: VecEnv | gym.Env, **hyperparameters: Any) -> BaseAlgorithm:
    """Build the SB3 model of ``agent`` on ``env`` (from :func:`make_training_env`).

    Args:
        agent: one of :data:`SB3_AGENTS`.
        env: its training environment: plain for index agents, ``QueryAction`` for query agents.
        **hyperparameters: keyword arguments of the agent's builder (:func:`make_ppo`,
            :func:`make_a2c`, :func:`make_dqn`, :func:`make_sac`, :func:`make_td3`), e.g.
            ``seed``, ``device``, ``tensorboard_log``, ``learning_rate``.

    Raises:
        ConfigurationError: unknown agent, an action space that does not fit it, or unknown
            hyper-parameters.
    """
    _check_agent(agent)
    expected = spaces.Box if agent in QUERY_AGENTS else spaces.Discrete
    if not isinstance(env.action_space, expected):
        raise ConfigurationError(
            f"agent {agent!r} needs a {expected.__name__} action space "
            f"({'wrap the env in QueryAction' if agent in QUERY_AGENTS else 'the plain DialogRetrievalEnv'}), "
            f"got {env.action_space}"
        )
    builder = _BUILDERS[agent]
    try:
        return builder(env, **hyperparameters)
    except TypeError as error:
        raise ConfigurationError(f"unknown hyper-parameters for {agent!r} ({builder.__name__}): {error}") from error


def load_model(agent: str, path: str | Path, env: VecEnv | gym.Env, device: str = "auto", **hyperparameters: Any) -> BaseAlgorithm:
    """Load a model saved with ``model.save(path)`` (an SB3 ``.zip``) for ``agent``, without running its pickles.

    An SB3 ``.zip`` stores some entries (the policy class, the spaces, schedules) as cloudpickle
    blobs, which SB3's own ``load`` unpickles, and a crafted file could run code that way. Here
    no blob of the file is unpickled: every such entry is replaced by the same entry of a fresh
    ``agent`` model built on ``env`` (our builders set all of them), and SB3 reads the weights
    with ``torch.load(weights_only=True)``. The saved weights must fit that fresh model, so a model
    made with other shapes (``net_arch``) needs the same ``hyperparameters`` here; the schedules
    (learning rate, clipping, exploration) are the builder's, which matters only to continued training.

    Args:
        agent: one of :data:`SB3_AGENTS`.
        path: the ``.zip``.
        env: an environment of the spaces the model was trained on (e.g. its
            :func:`make_training_env`), plain for index agents, ``QueryAction`` for query agents.
        device: torch device.
        **hyperparameters: keyword arguments of the agent's builder the model was made with.

    Raises:
        ConfigurationError: a missing or unreadable file, not an SB3 model, or weights and spaces
            that do not fit ``agent`` on ``env``.
    """
    import zipfile

    _check_agent(agent)
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"no saved {agent!r} model at {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise ConfigurationError(f"{str(path)!r} is not a readable Stable-Baselines3 model (.zip with a 'data' entry): {error}") from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"{str(path)!r}: its 'data' entry is not a JSON object")
    small = {"buffer_size": 1} if agent in ("dqn", "sac-query", "td3-query") else {}  # only its pickled entries are used
    fresh = make_model(agent, env, **{**hyperparameters, "seed": 0, "device": device, **small})
    pickled = [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]
    replacements = {key: getattr(fresh, key, None) for key in pickled}
    try:
        return _ALGORITHMS[agent].load(path, env=env, device=device, custom_objects=replacements)
    except Exception as error:  # noqa: BLE001 - SB3 raises many types for a file that does not fit
        raise ConfigurationError(f"saved {agent!r} model {str(path)!r} could not be loaded: {type(error).__name__}: {error}") from error


class ProgressCallback(BaseCallback):
    """Advances a progress bar (anything with ``update(n)``, e.g. ``tqdm``) by the environment
    steps of each vector step."""

    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True


def _check_agent(agent: str) -> None:
    if agent not in SB3_AGENTS:
        raise ConfigurationError(f"unknown SB3 agent {agent!r}; choose one of {list(SB3_AGENTS)}")


def _check_query_env(env: VecEnv | gym.Env, algorithm: str) -> spaces.Box:
    space = env.action_space
    if not isinstance(space, spaces.Box):
        raise ConfigurationError(f"{algorithm} needs the query action (wrap the env in QueryAction), got {space}")
    return space


# ---------------------------------------------------------------------------- evaluation adapter
class SB3Agent(Agent):
    """A trained SB3 model as an :class:`~agents.base.Agent`, for :func:`agents.evaluation.evaluate`.

    Each turn the batched observation of the native vector environment goes through
    ``model.predict(observations, deterministic=True)``; the predicted actions become images:

    - query agents (``Box`` action): the query's nearest image of the evaluated split, with
      :func:`~dialog_env.wrappers.nearest_image`, as during training. They rank the whole split by
      distance to their query, so :meth:`rank_targets` reports the target's rank w.r.t. the query
      (the paper's "ranking percentile", :meth:`Ranker.query_target_ranks
      <dialog_env.ranking.Ranker.query_target_ranks>`).
    - index agents (``Discrete(N)``): the index names an image of ``action_catalog``, the split
      the model was trained on. On that same split (identical ids) it is shown as is. On another
      split (the test split of ``train_agent.py``) it is read as "an image like training image
      ``i``": its features are the query and the nearest image of the evaluated split is shown,
      with the same ``nearest_image``. Index agents do not rank the catalogue
      (:meth:`rank_targets` returns ``None``).

    Args:
        model: a trained SB3 model with ``MultiInputPolicy``.
        name: agent name in tables (e.g. ``"ppo"``).
        action_catalog: for index agents, the catalogue split the model's indices refer to
            (its training split); ignored by query agents.

    Raises:
        ConfigurationError: an index model without ``action_catalog`` or whose action space does
            not match its size, or another action space.
    """

    def __init__(self, model: BaseAlgorithm, name: str = "sb3", action_catalog: Catalog | None = None) -> None:
        self.model = model
        self.name = name
        space = model.action_space
        if isinstance(space, spaces.Discrete):
            if action_catalog is None:
                raise ConfigurationError(
                    f"SB3Agent {name!r}: an index model (Discrete({space.n})) needs action_catalog, the split it was trained on"
                )
            if action_catalog.num_images != int(space.n):
                raise ConfigurationError(
                    f"SB3Agent {name!r}: the model acts over Discrete({space.n}) but action_catalog has "
                    f"{action_catalog.num_images} images; pass the split the model was trained on"
                )
            self.query_agent = False
        elif isinstance(space, spaces.Box) and len(space.shape) == 1:
            self.query_agent = True
        else:
            raise ConfigurationError(f"SB3Agent {name!r}: expected a Discrete or 1-D Box action space, got {space}")
        self.action_catalog = action_catalog if not self.query_agent else None
        self._ranker: Ranker | None = None
        self._identity = False
        self._queries = np.zeros((0, 0), dtype=np.float32)

    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        image_space = self.model.observation_space["image"]
        if catalog.dim != image_space.shape[0]:
            raise ConfigurationError(
                f"SB3Agent {self.name!r}: the model was trained on {image_space.shape[0]}-dimensional features, "
                f"the catalogue has {catalog.dim}"
            )
        self._ranker = Ranker(catalog.features, catalog.squared_norms)
        self._identity = self.action_catalog is not None and np.array_equal(self.action_catalog.ids, catalog.ids)
        self._queries = np.zeros((num_dialogs, catalog.dim), dtype=np.float32)

    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        if self._ranker is None:
            raise ConfigurationError(f"SB3Agent {self.name!r}: act() called before reset()")
        batch = {key: np.asarray(observations[key]) for key in _OBSERVATION_KEYS}
        actions, _ = self.model.predict(batch, deterministic=True)
        actions = np.asarray(actions)
        if self.query_agent:
            self._queries = actions.reshape(actions.shape[0], -1).astype(np.float32)
            return nearest_image(self._ranker, self._queries)
        indices = actions.reshape(-1).astype(np.int64)
        if self._identity:
            return indices
        assert self.action_catalog is not None
        return nearest_image(self._ranker, self.action_catalog.features[indices])

    def rank_targets(self, targets: np.ndarray) -> np.ndarray | None:
        if not self.query_agent:
            return None
        assert self._ranker is not None
        return self._ranker.query_target_ranks(self._queries, np.asarray(targets, dtype=np.int64))
