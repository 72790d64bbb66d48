"""Stable-Baselines3 baselines for ``DialogRetrieval-v0``.

Nine agents, named as on ``train_agent.py``'s command line (the table below), three of them from
sb3-contrib (``MaskablePPO``, ``RecurrentPPO``): the *index* agents act with ``Discrete(N)``, a
catalogue index; the *query* agents with ``Box(D)``, a query vector (as
:class:`~dialog_env.wrappers.QueryAction`). They train on :func:`make_training_env`, an SB3
``VecEnv`` over the native vector environment (:class:`~agents.sb3_vec.NativeDialogVecEnv`).

Every policy is SB3's ``MultiInputPolicy`` (``RecurrentPPO``'s ``MultiInputLstmPolicy``: the
features, then an LSTM, then the MLP heads), :attr:`ModelSpec.policy`, with
:class:`DialogFeaturesExtractor` as its features extractor (passed through ``policy_kwargs``).

- ``maskable-ppo`` is PPO that never shows an image twice in a dialog: each step it reads the
  environment's no-repeat mask (``env.action_masks()``, True = not yet shown) and gives the
  shown images probability 0. Its rollout buffer keeps the masks, ``n_steps * n_envs * N``
  float32 (41 MB at ``n_steps = 256``, 4 environments, ``N = 10,000``).
- ``recurrent-ppo`` and ``recurrent-ppo-query`` are PPO with an LSTM over the dialog's turns, so
  the policy can combine all the feedback so far (the paper's state tracker is recurrent too)
  instead of seeing only the last caption and image. Both actions are offered: the index one
  compares directly with ``ppo`` and ``maskable-ppo``; the query one is the closest to the
  paper's agent (a recurrent state tracker that emits a point in feature space, shown as its
  nearest image), whose action means the same on the train and test splits and generalises
  across neighbouring images, where an index policy must learn each of ``N`` outputs.

:class:`SB3Agent` adapts a trained model to the :class:`~agents.base.Agent` protocol, so that it
is evaluated by :func:`agents.evaluation.evaluate` exactly like every other agent.

**Hyper-parameters.** :func:`make_model` builds every agent from one table, :data:`MODEL_SPECS`:
per agent, the algorithm, the action and the hyper-parameters of the project that differ from
SB3's defaults (everything else is SB3's); keyword arguments of :func:`make_model` override them
(any keyword of the algorithm's constructor; unknown ones are refused with the list of known
ones). Every agent also gets ``seed=0`` and ``policy_kwargs=default_policy_kwargs()``
(:class:`DialogFeaturesExtractor`, then ``net_arch=[64, 64]``) (:data:`COMMON_HYPERPARAMETERS`).
For the sb3-contrib agents "SB3's default" is sb3-contrib's.

| agent | algorithm | action | hyper-parameter | project | SB3's default |
| --- | --- | --- | --- | --- | --- |
| ``ppo`` | PPO | index | ``n_steps`` (per environment) | 256 | 2048 |
| | | | ``batch_size`` | 256 | 64 |
| | | | ``n_epochs`` | 4 | 10 |
| | | | ``gamma`` | 0.9 | 0.99 |
| | | | ``ent_coef`` | 0.01 | 0.0 |
| ``a2c`` | A2C | index | ``n_steps`` | 8 | 5 |
| | | | ``gamma`` | 0.9 | 0.99 |
| | | | ``ent_coef`` | 0.01 | 0.0 |
| ``dqn`` | DQN | index | ``learning_rate`` | 5e-4 | 1e-4 |
| | | | ``buffer_size`` | 50,000 | 1,000,000 |
| | | | ``learning_starts`` | 1,000 | 100 |
| | | | ``batch_size`` | 64 | 32 |
| | | | ``gamma`` | 0.9 | 0.99 |
| | | | ``target_update_interval`` | 1,000 | 10,000 |
| | | | ``exploration_fraction`` | 0.3 | 0.1 |
| ``ppo-query`` | PPO | query | as ``ppo`` | | |
| ``sac-query`` | SAC | query | ``buffer_size`` | 50,000 | 1,000,000 |
| | | | ``learning_starts`` | 1,000 | 100 |
| | | | ``batch_size`` | 128 | 256 |
| | | | ``gamma`` | 0.9 | 0.99 |
| ``td3-query`` | TD3 | query | ``buffer_size`` | 50,000 | 1,000,000 |
| | | | ``learning_starts`` | 1,000 | 100 |
| | | | ``batch_size`` | 128 | 256 |
| | | | ``gamma`` | 0.9 | 0.99 |
| | | | ``action_noise_scale`` (the project's) | 0.1 | no action noise |
| ``maskable-ppo`` | MaskablePPO | index | as ``ppo`` | | |
| ``recurrent-ppo`` | RecurrentPPO | index | as ``ppo``, and: | | |
| | | | ``n_steps`` (per environment) | 256 | 128 |
| | | | ``batch_size`` | 256 | 128 |
| | | | ``policy_kwargs["lstm_hidden_size"]`` | 64 | 256 |
| ``recurrent-ppo-query`` | RecurrentPPO | query | as ``recurrent-ppo`` | | |
| every agent | | | ``seed`` | 0 | ``None`` |
| | | | ``policy_kwargs`` | :func:`default_policy_kwargs` | SB3's extractor |

Why: dialogs last 5-10 turns (``gamma=0.9``); training budgets are a few CPU minutes (PPO's
``n_steps`` per environment and epochs, A2C's ``n_steps``, and the warm-up ``learning_starts`` and
DQN's ``target_update_interval`` scaled to tens of thousands of steps); ``ent_coef=0.01`` keeps a
policy over up to 10,000 images from collapsing early. ``buffer_size`` is 50,000 transitions
rather than SB3's million: a transition holds two observations of ``16 * 8 + 4 D + 8`` bytes
(about 1.2 kB at ``D = 256``), so a million would need about 2.4 GB. SAC squashes its actions into
the action box, the catalogue's feature range. ``action_noise_scale``, the project's own
hyper-parameter, is TD3's exploration: Gaussian action noise whose standard deviation is that share
of half the width of the action box, per dimension (SB3's ``action_noise`` replaces it).
``lstm_hidden_size=64`` matches the 64-unit layers after the extractor and keeps the two LSTMs
(actor and critic) about 8 times smaller than with sb3-contrib's 256 units, for CPU budgets.

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

import copy
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents import registry
from agents.base import Agent
from dialog_env.catalog import Catalog
from dialog_env.env import make_catalog
from dialog_env.errors import ConfigurationError, DependencyNotInstalled

try:
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as error:  # an optional dependency (setup.cfg extra "sb3")
    raise DependencyNotInstalled(
        f'the Stable-Baselines3 agents need stable-baselines3: pip install "dialog-retrieval-env[sb3]" ({error})'
    ) from error
try:
    from sb3_contrib import MaskablePPO, RecurrentPPO
    from sb3_contrib.common.maskable.utils import is_masking_supported
except ImportError as error:  # the same optional extra "sb3" lists sb3-contrib
    raise DependencyNotInstalled(
        f'the Stable-Baselines3 agents maskable-ppo and recurrent-ppo need sb3-contrib: '
        f'pip install "dialog-retrieval-env[sb3]" ({error})'
    ) from error
from agents.sb3_policies import policy_for
from agents.sb3_vec import NativeDialogVecEnv
from dialog_env.ranking import Ranker
from dialog_env.wrappers import nearest_image

__all__ = [
    "DialogFeaturesExtractor",
    "INDEX_AGENTS",
    "ProgressCallback",
    "QUERY_AGENTS",
    "SB3_AGENTS",
    "SB3Agent",
    "COMMON_HYPERPARAMETERS",
    "MODEL_SPECS",
    "ModelSpec",
    "PROJECT_HYPERPARAMETERS",
    "algorithm_keywords",
    "default_policy_kwargs",
    "load_model",
    "make_model",
    "make_training_env",
    "model_hyperparameters",
]

#: Agents whose action is a catalogue index (``Discrete(N)``); the names live in :mod:`agents.registry`.
INDEX_AGENTS = registry.SB3_INDEX_AGENTS
#: Agents whose action is a query vector (``Box(D)``, through :class:`QueryAction`).
QUERY_AGENTS = registry.SB3_QUERY_AGENTS
#: Every Stable-Baselines3 agent.
SB3_AGENTS = registry.SB3_AGENTS

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
        for name, value in (
            ("word_dim", word_dim),
            ("text_dim", text_dim),
            ("image_dim", image_dim),
            ("kernel_size", kernel_size),
        ):
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
        mask = (tokens != 0).unsqueeze(2)  # (B, L, 1)
        channels = torch.relu(self._convolve_words(tokens))  # (B, L, text_dim), >= 0
        # Zeroing padded positions before the max is the masked max, because ReLU outputs are
        # >= 0; a caption without tokens encodes to zeros.
        text = (channels * mask).amax(dim=1)
        image = self.image_mlp(observations["image"].float())
        turn = observations["turn"].float() / self.max_turns
        return torch.cat([text, image, turn], dim=1)

    #: Batches at least this large convolve by table look-ups; smaller ones (SB3's one-dialog
    #: value bootstraps) through ``nn.Conv1d`` itself, which has fewer calls' overhead.
    TABLE_MIN_BATCH = 8

    def _convolve_words(self, tokens: torch.Tensor) -> torch.Tensor:
        """``self.conv`` over the embedded tokens, by table look-ups for batches of 8 or more.

        Embedding then convolving is linear in the embedding, so the contribution of word ``v``
        at kernel offset ``j`` to every channel is one row of the table ``E @ W[:, :, j].T``
        (``V x text_dim``; all tables are one 147 x 32 x 192 product); the convolution at a
        position is the bias plus the sum of ``kernel_size`` rows, one ``embedding_bag``. Same
        function of the same parameters as ``self.conv(self.embedding(tokens).transpose(1, 2))``,
        for batches of 64-256 on CPU 2-10x cheaper than ``nn.Conv1d`` forward and about 1.5x
        forward and backward (issue 14). As with ``nn.Embedding``'s ``padding_idx``, row 0 gets no gradient; the
        convolution's zero padding at both ends is an extra all-zero row (index ``V``).

        Args:
            tokens: ``(B, L)`` int64 token ids in ``[0, V)``.

        Returns:
            ``(B, L, text_dim)`` float32 pre-activation channels.
        """
        batch, length = tokens.shape
        if batch < self.TABLE_MIN_BATCH:
            return self.conv(self.embedding(tokens).transpose(1, 2)).transpose(1, 2)
        width, rows = self.conv.kernel_size[0], self.vocab_size + 1
        weight = self.embedding.weight  # (V, word_dim)
        words = torch.cat([weight[:1].detach(), weight[1:], weight.new_zeros(1, weight.shape[1])])  # (V + 1, word_dim)
        tables = torch.matmul(words, self.conv.weight.permute(2, 1, 0)).reshape(width * rows, -1)  # (width (V+1), O)
        padded = nn.functional.pad(tokens, (width // 2, width // 2), value=self.vocab_size)  # (B, L + width - 1)
        # Window position t, offset j: word padded[t + j], looked up in table j.
        windows = padded.unfold(1, width, 1) + torch.arange(width, device=tokens.device) * rows  # (B, L, width)
        channels = nn.functional.embedding_bag(windows.reshape(-1, width), tables, mode="sum")  # (B L, O)
        return channels.reshape(batch, length, -1) + self.conv.bias


def _check_observation_space(observation_space: Any) -> None:
    if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != set(_OBSERVATION_KEYS):
        found = (
            list(observation_space.spaces)
            if isinstance(observation_space, spaces.Dict)
            else type(observation_space).__name__
        )
        raise ConfigurationError(
            f"DialogFeaturesExtractor needs the DialogRetrieval Dict observation with keys {list(_OBSERVATION_KEYS)}, "
            f"got {found}"
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
) -> NativeDialogVecEnv:
    """The SB3 vector environment an agent trains on: ``n_envs`` dialogs of one native vector environment.

    A :class:`~agents.sb3_vec.NativeDialogVecEnv` (all dialogs ranked with one matrix product and
    captioned with one user call per step) with the agent's action: image indices for index
    agents, query vectors (as :class:`~dialog_env.wrappers.QueryAction`) for query agents. Per
    dialog its transitions equal those of ``DummyVecEnv`` over ``n_envs`` ``Monitor``-wrapped
    single environments (``QueryAction`` around them for query agents), which this function
    returned before (``tests/test_sb3_vec.py``), ``Monitor``'s episode statistics included. Dialog
    ``i`` is seeded with ``seed + i`` at the first reset, as ``DummyVecEnv.seed(seed)`` seeds
    environment ``i``. With index actions it also has the no-repeat ``action_masks()`` that
    ``maskable-ppo`` trains with. ``env.get_attr("catalog")[0]`` is the training split.

    Args:
        agent: one of :data:`SB3_AGENTS`.
        env_kwargs: arguments of :class:`~dialog_env.env.DialogRetrievalEnv` (``catalog``,
            ``split``, ``user``, ``reward_mode``...); not ``max_turns``, ``expose_target``,
            ``num_envs`` or ``autoreset_mode``.
        n_envs: dialogs stepped together.
        seed: seed of the first resets (dialog ``i``: ``seed + i``).
        max_turns: turns per training dialog.

    Returns:
        The environment, not reset yet (SB3's ``learn`` resets it).

    Raises:
        ConfigurationError: unknown agent, ``n_envs < 1`` or reserved ``env_kwargs``.
    """
    _check_agent(agent)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ConfigurationError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    env_kwargs = dict(env_kwargs or {})
    for reserved in ("max_turns", "expose_target", "num_envs", "autoreset_mode"):
        if reserved in env_kwargs:
            raise ConfigurationError(f"make_training_env() sets {reserved!r} itself; remove it from env_kwargs")
    env_kwargs["catalog"] = make_catalog(env_kwargs.get("catalog"))
    action = "query" if agent in QUERY_AGENTS else "index"
    vec_env = NativeDialogVecEnv(n_envs, action=action, max_turns=max_turns, **env_kwargs)
    vec_env.seed(seed)
    return vec_env


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """How :func:`make_model` builds one agent's SB3 model.

    Attributes:
        algorithm: the SB3 (or sb3-contrib) algorithm class (its constructor takes the
            hyper-parameters).
        action: ``"index"`` (``Discrete(N)``, the plain environment) or ``"query"`` (``Box(D)``,
            :class:`~dialog_env.wrappers.QueryAction`).
        hyperparameters: the project's defaults: only those that differ from SB3's, or that the
            project fixes on purpose (on top of :data:`COMMON_HYPERPARAMETERS`).
        policy: the policy :func:`make_model` passes to the algorithm: a name the algorithm
            knows (``"MultiInputPolicy"``; ``"MultiInputLstmPolicy"`` for ``RecurrentPPO``) or a
            policy class.
    """

    algorithm: type[BaseAlgorithm]
    action: str
    hyperparameters: Mapping[str, Any]
    policy: str | type = "MultiInputPolicy"


#: Hyper-parameters every agent gets: a fixed seed (SB3: none) and the dialog features extractor.
COMMON_HYPERPARAMETERS: dict[str, Any] = {"seed": 0, "policy_kwargs": default_policy_kwargs()}
#: PPO on either action (why: see the module docstring).
_PPO = {"n_steps": 256, "batch_size": 256, "n_epochs": 4, "gamma": 0.9, "ent_coef": 0.01}
#: The off-policy algorithms' replay buffer and warm-up (why: see the module docstring).
_REPLAY = {"buffer_size": 50_000, "learning_starts": 1_000}
#: RecurrentPPO: PPO's settings, and an LSTM of 64 units (sb3-contrib: 256) after the extractor.
_RECURRENT_PPO = {**_PPO, "policy_kwargs": {**default_policy_kwargs(), "lstm_hidden_size": 64}}

#: agent -> its model, one row per agent (the module docstring's table).
MODEL_SPECS: dict[str, ModelSpec] = {
    "ppo": ModelSpec(PPO, "index", _PPO),
    "a2c": ModelSpec(A2C, "index", {"n_steps": 8, "gamma": 0.9, "ent_coef": 0.01}),
    "dqn": ModelSpec(
        DQN,
        "index",
        {
            "learning_rate": 5e-4,
            **_REPLAY,
            "batch_size": 64,
            "gamma": 0.9,
            "target_update_interval": 1_000,
            "exploration_fraction": 0.3,
        },
    ),
    "ppo-query": ModelSpec(PPO, "query", _PPO),
    "sac-query": ModelSpec(SAC, "query", {**_REPLAY, "batch_size": 128, "gamma": 0.9}),
    "td3-query": ModelSpec(TD3, "query", {**_REPLAY, "batch_size": 128, "gamma": 0.9, "action_noise_scale": 0.1}),
    "maskable-ppo": ModelSpec(MaskablePPO, "index", _PPO),
    "recurrent-ppo": ModelSpec(RecurrentPPO, "index", _RECURRENT_PPO, policy="MultiInputLstmPolicy"),
    "recurrent-ppo-query": ModelSpec(RecurrentPPO, "query", _RECURRENT_PPO, policy="MultiInputLstmPolicy"),
}

#: Hyper-parameters of the project that no SB3 constructor takes; :func:`make_model` turns them
#: into SB3's.
PROJECT_HYPERPARAMETERS = ("action_noise_scale",)
#: Constructor arguments that :func:`make_model` sets itself.
_SET_BY_MAKE_MODEL = ("self", "policy", "env", "_init_setup_model")

if set(MODEL_SPECS) != set(SB3_AGENTS) or {a for a, m in MODEL_SPECS.items() if m.action == "query"} != set(
    QUERY_AGENTS
):
    raise ImportError(f"agents.sb3.MODEL_SPECS {sorted(MODEL_SPECS)} does not match agents.registry's SB3 agents")


def algorithm_keywords(algorithm: type[BaseAlgorithm]) -> tuple[str, ...]:
    """The hyper-parameters ``algorithm``'s constructor takes (not ``policy`` and ``env``), in its order."""
    parameters = inspect.signature(algorithm.__init__).parameters
    return tuple(name for name in parameters if name not in _SET_BY_MAKE_MODEL)


def model_hyperparameters(agent: str, **overrides: Any) -> dict[str, Any]:
    """The hyper-parameters :func:`make_model` passes on: the table's, then ``overrides``.

    ``policy_kwargs=None`` (or empty) keeps the table's :func:`default_policy_kwargs`. The result
    is a fresh copy (SB3 adds entries to ``policy_kwargs``; the table must not change).

    Args:
        agent: one of :data:`SB3_AGENTS`.
        **overrides: keyword arguments of the agent's SB3 algorithm, or of
            :data:`PROJECT_HYPERPARAMETERS` where the agent's row has them.

    Raises:
        ConfigurationError: unknown agent or hyper-parameters (the message lists the known ones).
    """
    _check_agent(agent)
    spec = MODEL_SPECS[agent]
    known = algorithm_keywords(spec.algorithm)
    project = tuple(key for key in PROJECT_HYPERPARAMETERS if key in spec.hyperparameters)
    unknown = sorted(set(overrides) - set(known) - set(project))
    if unknown:
        reserved = [key for key in unknown if key in _SET_BY_MAKE_MODEL]
        hint = f" ({', '.join(reserved)}: set by make_model)" if reserved else ""
        raise ConfigurationError(
            f"unknown hyper-parameters for {agent!r} ({spec.algorithm.__name__}): {unknown}{hint}; "
            f"known: {sorted(known + project)}"
        )
    if "action_noise" in overrides and "action_noise_scale" in overrides:
        raise ConfigurationError(f"{agent!r}: give action_noise or action_noise_scale, not both")
    settings = copy.deepcopy({**COMMON_HYPERPARAMETERS, **spec.hyperparameters})
    settings.update({key: value for key, value in overrides.items() if not (key == "policy_kwargs" and not value)})
    return settings


def make_model(agent: str, env: VecEnv | gym.Env, **hyperparameters: Any) -> BaseAlgorithm:
    """Build the SB3 model of ``agent`` on ``env`` (from :func:`make_training_env`).

    The policy is the row's :attr:`ModelSpec.policy` (``MultiInputPolicy``; the recurrent agents'
    ``MultiInputLstmPolicy``); the hyper-parameters are those of the agent's row of
    :data:`MODEL_SPECS` (see the module docstring), with ``hyperparameters`` over them
    (:func:`model_hyperparameters`). ``action_noise_scale`` (``td3-query``) becomes SB3's
    ``action_noise``: Gaussian noise whose standard deviation is that share of half the width of
    the action box, per dimension (an explicit ``action_noise`` replaces it).

    Args:
        agent: one of :data:`SB3_AGENTS`.
        env: its training environment, :func:`make_training_env`'s (or any environment of the
            same spaces: plain for index agents, ``QueryAction`` for query agents);
            ``maskable-ppo`` also needs its ``action_masks()``.
        **hyperparameters: keyword arguments of the agent's SB3 algorithm (e.g. ``seed``,
            ``device``, ``tensorboard_log``, ``learning_rate``, ``n_steps``), or of
            :data:`PROJECT_HYPERPARAMETERS` where the agent's row has them.

    Raises:
        ConfigurationError: unknown agent, an action space that does not fit it, an environment
            without action masks for ``maskable-ppo``, unknown hyper-parameters, or values the
            algorithm refuses.
    """
    settings = model_hyperparameters(agent, **hyperparameters)
    spec = MODEL_SPECS[agent]
    query = spec.action == "query"
    expected = spaces.Box if query else spaces.Discrete
    if not isinstance(env.action_space, expected):
        raise ConfigurationError(
            f"agent {agent!r} needs a {expected.__name__} action space "
            f"({'wrap the env in QueryAction' if query else 'the plain DialogRetrievalEnv'}), "
            f"got {env.action_space}"
        )
    if spec.algorithm is MaskablePPO and not is_masking_supported(env):
        raise ConfigurationError(
            f"agent {agent!r} needs an environment with action_masks() (the no-repeat mask of "
            f"make_training_env({agent!r})), got {type(env).__name__} without one"
        )
    if "action_noise_scale" in settings:
        scale = settings.pop("action_noise_scale")
        if "action_noise" not in hyperparameters:
            sigma = scale * (env.action_space.high - env.action_space.low) / 2.0
            settings["action_noise"] = NormalActionNoise(np.zeros_like(sigma), sigma)
    try:
        return spec.algorithm(policy_for(spec.algorithm, env.action_space, spec.policy), env, **settings)
    except (TypeError, ValueError, AssertionError) as error:
        raise ConfigurationError(
            f"{agent!r} ({spec.algorithm.__name__}) refused the hyper-parameters {sorted(hyperparameters)}: "
            f"{type(error).__name__}: {error}"
        ) from error


def load_model(
    agent: str, path: str | Path, env: VecEnv | gym.Env, device: str = "auto", **hyperparameters: Any
) -> BaseAlgorithm:
    """Load a model saved with ``model.save(path)`` (an SB3 ``.zip``) for ``agent``, without running its pickles.

    An SB3 ``.zip`` stores some entries (the policy class, the spaces, schedules) as cloudpickle
    blobs, which SB3's own ``load`` unpickles, and a crafted file could run code that way. Here
    no blob of the file is unpickled: every such entry is replaced by the same entry of a fresh
    ``agent`` model built on ``env`` (:func:`make_model` sets all of them), and SB3 reads the weights
    with ``torch.load(weights_only=True)``. The saved weights must fit that fresh model, so a model
    made with other shapes (``net_arch``) needs the same ``hyperparameters`` here; the schedules
    (learning rate, clipping, exploration) are :func:`make_model`'s, which matters only to continued training.
    sb3-contrib's models (``MaskablePPO``, ``RecurrentPPO``) are ``.zip`` files of the same format
    and load the same way.

    Args:
        agent: one of :data:`SB3_AGENTS`.
        path: the ``.zip``.
        env: an environment of the spaces the model was trained on (e.g. its
            :func:`make_training_env`), plain for index agents, ``QueryAction`` for query agents;
            with ``action_masks()`` for ``maskable-ppo`` (both are).
        device: torch device.
        **hyperparameters: the :func:`make_model` hyper-parameters the model was made with.

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
        raise ConfigurationError(
            f"{str(path)!r} is not a readable Stable-Baselines3 model (.zip with a 'data' entry): {error}"
        ) from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"{str(path)!r}: its 'data' entry is not a JSON object")
    # Only the fresh model's pickled entries are used: no need for a real replay buffer.
    small = {"buffer_size": 1} if "buffer_size" in algorithm_keywords(MODEL_SPECS[agent].algorithm) else {}
    fresh = make_model(agent, env, **{**hyperparameters, "seed": 0, "device": device, **small})
    pickled = [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]
    replacements = {key: getattr(fresh, key, None) for key in pickled}
    try:
        return MODEL_SPECS[agent].algorithm.load(path, env=env, device=device, custom_objects=replacements)
    except Exception as error:  # noqa: BLE001 - SB3 raises many types for a file that does not fit
        raise ConfigurationError(
            f"saved {agent!r} model {str(path)!r} could not be loaded: {type(error).__name__}: {error}"
        ) from error


class ProgressCallback(BaseCallback):
    """Advances a progress bar by the environment steps of each vector step.

    Args:
        bar: anything with ``update(n)``, e.g. ``tqdm``.
    """

    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True


def _check_agent(agent: str) -> None:
    if agent not in SB3_AGENTS:
        raise ConfigurationError(f"unknown SB3 agent {agent!r}; choose one of {list(SB3_AGENTS)}")


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

    Two kinds of model need more than the observation, and the adapter keeps it per dialog (a
    dialog whose ``observations["turn"]`` is 0 has just started, see :mod:`agents.base`):

    - ``RecurrentPPO`` (``recurrent-ppo``, ``recurrent-ppo-query``): the LSTM state returned by
      the previous ``predict`` goes into the next, with ``episode_start`` True for the dialogs at
      turn 0 (their state starts from zeros); :meth:`reset` drops it.
    - ``MaskablePPO`` (``maskable-ppo``): ``predict(..., action_masks=masks)`` with the no-repeat
      mask over the model's actions. During training the mask is the environment's: True for the
      training images not yet shown in the dialog. On the evaluated split an action ``i`` shows
      the evaluated image nearest training image ``i``, so the mask keeps its *meaning*, "do not
      show an image already shown in this dialog", and forbids every training index whose nearest
      evaluated image was already shown: the first image (``infos["shown_index"]`` at turn 0,
      when ``infos`` has it) and every image :meth:`act` returned since. Masking only the indices
      the model already chose would not be enough: several training images share one nearest
      test image (about two per test image in the default catalogue), so the agent could show an
      image again. With this mask it never does, as long as some evaluated image that is a
      nearest neighbour of a training image is still unseen; in the rare dialog where none is
      (tiny splits, long dialogs) the mask is lifted for that turn rather than leaving no action.
      On the training split itself (identical ids) this is the environment's mask exactly.

    Args:
        model: a trained SB3 or sb3-contrib model (``MultiInputPolicy``, or
            ``MultiInputLstmPolicy`` for ``RecurrentPPO``).
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
                    f"SB3Agent {name!r}: an index model (Discrete({space.n})) needs action_catalog, the split it was "
                    "trained on"
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
        self.masked = isinstance(model, MaskablePPO)
        self.recurrent = isinstance(model, RecurrentPPO)
        self._ranker: Ranker | None = None
        self._identity = False
        self._queries = np.zeros((0, 0), dtype=np.float32)
        # MaskablePPO: each action's image in the evaluated split (cached per catalogue object)
        # and the images shown so far in each dialog; RecurrentPPO: the LSTM states.
        self._images_of_actions: np.ndarray | None = None
        self._images_catalog: Catalog | None = None
        self._shown = np.zeros((0, 0), dtype=np.bool_)
        self._lstm_states: tuple[np.ndarray, ...] | None = None

    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Prepare for ``num_dialogs`` dialogs over ``catalog``, the evaluated split (its ranker, the index mapping)."""
        image_space = self.model.observation_space["image"]
        if catalog.dim != image_space.shape[0]:
            raise ConfigurationError(
                f"SB3Agent {self.name!r}: the model was trained on {image_space.shape[0]}-dimensional features, "
                f"the catalogue has {catalog.dim}"
            )
        self._ranker = Ranker(catalog.features, catalog.squared_norms)
        self._identity = self.action_catalog is not None and np.array_equal(self.action_catalog.ids, catalog.ids)
        self._queries = np.zeros((num_dialogs, catalog.dim), dtype=np.float32)
        self._lstm_states = None
        if self.masked:
            if self._images_catalog is not catalog:
                assert self.action_catalog is not None
                self._images_of_actions = (
                    np.arange(catalog.num_images, dtype=np.int64)
                    if self._identity
                    else nearest_image(self._ranker, self.action_catalog.features)
                )
                self._images_catalog = catalog
            self._shown = np.zeros((num_dialogs, catalog.num_images), dtype=np.bool_)

    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """The images to show: the model's deterministic actions mapped to the split (see the class docstring).

        Args:
            observations: the batched observation (``feedback (B, L)``, ``image (B, D)``,
                ``turn (B, 1)``).
            infos: the batched info; ``maskable-ppo`` reads ``shown_index (B,)`` (with its
                ``_shown_index`` mask, if any) to count the first image as shown, and works
                without it.

        Returns:
            ``(B,) int64`` image indices of the evaluated split.
        """
        if self._ranker is None:
            raise ConfigurationError(f"SB3Agent {self.name!r}: act() called before reset()")
        batch = {key: np.asarray(observations[key]) for key in _OBSERVATION_KEYS}
        starting = batch["turn"].reshape(-1) == 0  # dialogs that have just started (agents.base)
        if self.recurrent:
            actions, self._lstm_states = self.model.predict(
                batch, state=self._lstm_states, episode_start=starting, deterministic=True
            )
        elif self.masked:
            actions, _ = self.model.predict(batch, deterministic=True, action_masks=self.action_masks(starting, infos))
        else:
            actions, _ = self.model.predict(batch, deterministic=True)
        images = self._images(np.asarray(actions))
        if self.masked:
            self._shown[np.arange(images.size), images] = True
        return images

    def action_masks(self, starting: np.ndarray, infos: Mapping[str, Any]) -> np.ndarray:
        """``maskable-ppo``: the no-repeat mask over the model's actions (see the class docstring).

        Forgets the images of the dialogs in ``starting`` and counts ``infos["shown_index"]`` as
        shown, then forbids every action whose image was shown.

        Args:
            starting: ``(B,) bool``, the dialogs at turn 0.
            infos: the batched info of :meth:`act`.

        Returns:
            ``(B, A) bool`` over the model's ``A`` actions (the training split's images), True =
            allowed; a row with nothing allowed is all True instead.
        """
        if not self.masked or self._images_of_actions is None:
            raise ConfigurationError(f"SB3Agent {self.name!r}: action masks are for a MaskablePPO model after reset()")
        self._shown[starting] = False
        if "shown_index" in infos:
            present = np.asarray(infos.get("_shown_index", np.ones(len(self._shown), dtype=np.bool_)), dtype=np.bool_)
            dialogs = np.flatnonzero(present)
            self._shown[dialogs, np.asarray(infos["shown_index"], dtype=np.int64)[dialogs]] = True
        allowed = ~self._shown[:, self._images_of_actions]
        allowed[~allowed.any(axis=1)] = True  # no unseen image reachable: lift the mask for this turn
        return allowed

    def _images(self, actions: np.ndarray) -> np.ndarray:
        """``(B,) int64`` images of the evaluated split for the model's ``actions`` (queries or indices)."""
        assert self._ranker is not None
        if self.query_agent:
            self._queries = actions.reshape(actions.shape[0], -1).astype(np.float32)
            return nearest_image(self._ranker, self._queries)
        indices = actions.reshape(-1).astype(np.int64)
        if self._identity:
            return indices
        if self._images_of_actions is not None:  # maskable-ppo: already computed for every action
            return self._images_of_actions[indices]
        assert self.action_catalog is not None
        return nearest_image(self._ranker, self.action_catalog.features[indices])

    def rank_targets(self, targets: np.ndarray) -> np.ndarray | None:
        """Query agents: ``(B,) int64`` ranks of the targets w.r.t. the last queries; index agents: ``None``."""
        if not self.query_agent:
            return None
        assert self._ranker is not None
        return self._ranker.query_target_ranks(self._queries, np.asarray(targets, dtype=np.int64))
