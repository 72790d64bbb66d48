"""The turn model: what happens in one dialog turn, for any number of dialogs at once.

One turn of ``DialogRetrieval-v0``: the system shows an image; the target's *rank* w.r.t. the
shown image is computed by the ranking engine; the simulated shopper answers with a relative
caption; the caption is encoded into token ids; the reward follows from the rank percentiles.
:class:`DialogModel` is that turn, batched, and nothing else: it keeps no dialog state, so the
single environment, the vector environment and the planners that imagine dialogs (the paper's
look-ahead rollouts, :func:`agents.policy_improvement.rollout_values`) all use the same one.
Following RecSim, the world (the catalogue), the user's behaviour (the
:class:`~dialog_env.users.base.UserSimulator`) and the reward (a function passed in) are separate
parts that the model composes.

Planning agents read it as ``env.unwrapped.model`` (single env) or ``envs.model`` (vector env)::

    model = env.unwrapped.model
    response = model.respond(targets, shown, rngs)   # ranks, percentiles, captions, tokens
    rewards = model.reward(response.percentiles, previous_percentiles, shown == targets)

Reward functions take ``(percentiles, previous_percentiles, found)``, three ``(B,)`` arrays
(``float64``, ``float64``, ``bool``: this turn's rank percentiles, the previous turn's, whether
the target was shown), and return ``(B,) float64`` rewards. :data:`REWARD_FUNCTIONS` holds the
built-in ones by name; any callable of that signature may be passed instead.

**Interaction budget.** The model counts every caption its user simulator writes, by purpose:
``"dialog"`` for the turns of the dialogs the environment plays (the caption of a dialog's first
image included: a ``T``-turn dialog costs ``T + 1`` captions), ``"lookahead"`` for the turns a
planner imagines (the paper's stage 2 passes ``purpose="lookahead"``). :meth:`DialogModel.budget`
returns the counts as an :class:`InteractionBudget`; agents are compared at equal
``simulator_calls``, look-ahead included. Ranks alone (:meth:`DialogModel.ranks`) cost no call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker, rank_percentile
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary
from dialog_env.users.base import UserSimulator

__all__ = [
    "CALL_PURPOSES",
    "DialogModel",
    "InteractionBudget",
    "Response",
    "RewardFunction",
    "REWARD_FUNCTIONS",
    "percentile_reward",
    "improvement_reward",
    "success_reward",
    "resolve_reward",
    "uniform_except",
]

#: ``reward(percentiles, previous_percentiles, found) -> rewards``, all ``(B,)`` (see the module docstring).
RewardFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def percentile_reward(percentiles: np.ndarray, previous_percentiles: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The turn's rank percentile, in ``[0, 1]`` (the paper's look-ahead maximises their sum)."""
    return np.array(percentiles, dtype=np.float64)


def improvement_reward(percentiles: np.ndarray, previous_percentiles: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The rank percentile minus the previous turn's, in ``[-1, 1]``."""
    return np.asarray(percentiles, dtype=np.float64) - np.asarray(previous_percentiles, dtype=np.float64)


def success_reward(percentiles: np.ndarray, previous_percentiles: np.ndarray, found: np.ndarray) -> np.ndarray:
    """1.0 when the target is shown, else 0.0."""
    return np.asarray(found, dtype=np.float64)


#: The built-in reward functions, by the name the environments' ``reward_mode`` takes.
REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "percentile": percentile_reward,
    "improvement": improvement_reward,
    "success": success_reward,
}


def resolve_reward(reward: str | RewardFunction) -> RewardFunction:
    """The reward function that ``reward`` names (a key of :data:`REWARD_FUNCTIONS`) or is.

    Raises:
        ConfigurationError: an unknown name, or neither a name nor a callable.
    """
    if isinstance(reward, str):
        if reward not in REWARD_FUNCTIONS:
            raise ConfigurationError(
                f"unknown reward_mode {reward!r}; choose one of {list(REWARD_FUNCTIONS)} or pass a function "
                f"reward(percentiles, previous_percentiles, found) -> rewards"
            )
        return REWARD_FUNCTIONS[reward]
    if callable(reward):
        return reward
    raise ConfigurationError(
        f"reward_mode must be one of {list(REWARD_FUNCTIONS)} or a function reward(percentiles, "
        f"previous_percentiles, found) -> rewards, got {reward!r} of type {type(reward).__name__}"
    )


#: What a caption of the user simulator is written for (see the module docstring).
CALL_PURPOSES = ("dialog", "lookahead")


@dataclass(frozen=True)
class InteractionBudget:
    """Captions written by the user simulator, by purpose: the interaction budget of training.

    Attributes:
        dialog_turns: captions of the dialogs played with the environment (a dialog's first
            image included).
        lookahead_calls: captions of imagined turns (look-ahead rollouts).
    """

    dialog_turns: int = 0
    lookahead_calls: int = 0

    @property
    def simulator_calls(self) -> int:
        """All captions: ``dialog_turns + lookahead_calls``, the figure agents are compared at."""
        return self.dialog_turns + self.lookahead_calls

    def __add__(self, other: InteractionBudget) -> InteractionBudget:
        if not isinstance(other, InteractionBudget):
            return NotImplemented
        return InteractionBudget(self.dialog_turns + other.dialog_turns, self.lookahead_calls + other.lookahead_calls)

    def __sub__(self, other: InteractionBudget) -> InteractionBudget:
        if not isinstance(other, InteractionBudget):
            return NotImplemented
        return InteractionBudget(self.dialog_turns - other.dialog_turns, self.lookahead_calls - other.lookahead_calls)

    def describe(self) -> str:
        """``"1,234,567 simulator calls (1,000,000 dialog turns + 234,567 look-ahead)"``."""
        return (
            f"{self.simulator_calls:,} simulator calls ({self.dialog_turns:,} dialog turns + "
            f"{self.lookahead_calls:,} look-ahead)"
        )

    def as_dict(self) -> dict[str, int]:
        """``{"simulator_calls", "dialog_turns", "lookahead_calls"}`` as plain ints (for JSON and logs)."""
        return {
            "simulator_calls": self.simulator_calls,
            "dialog_turns": self.dialog_turns,
            "lookahead_calls": self.lookahead_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> InteractionBudget:
        """The budget :meth:`as_dict` wrote (``None``: nothing spent).

        Raises:
            ConfigurationError: missing keys, values that are not integers >= 0, or a total that
                does not add up.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"an interaction budget must be a mapping, got {type(data).__name__}")
        values = {}
        for key in ("dialog_turns", "lookahead_calls"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"interaction budget {key!r} must be an integer >= 0, got {value!r}")
            values[key] = value
        budget = cls(**values)
        if "simulator_calls" in data and data["simulator_calls"] != budget.simulator_calls:
            raise ConfigurationError(
                f"interaction budget: simulator_calls {data['simulator_calls']!r} is not dialog_turns + "
                f"lookahead_calls = {budget.simulator_calls}"
            )
        return budget


def uniform_except(
    rng: np.random.Generator,
    num_images: int,
    excluded: int | np.ndarray,
    size: int | tuple[int, ...] | None = None,
    rows: slice | None = None,
) -> np.int64 | np.ndarray:
    """Uniform draws over ``0..num_images-1`` minus ``excluded`` (one ``rng.integers`` call).

    A dialog's first image (never its target), evaluation episodes and training negatives are all
    drawn this way, so that the same generator state gives the same numbers everywhere.

    Args:
        rng: the generator to draw from.
        num_images: ``N >= 2``.
        excluded: the index to leave out, or an array broadcasting against ``size`` (against its
            ``rows`` with ``rows``).
        size: shape of the draws (``None``: one scalar).
        rows: keep only these rows (first axis) of the ``size`` draws: one process's share of a
            batch drawn for all processes (:meth:`agents.distributed.DialogShard.rows`), the same
            numbers as those rows of the whole draw.

    Returns:
        ``int64`` scalar or array of shape ``size`` (its ``rows`` with ``rows``).
    """
    draws = rng.integers(num_images - 1, size=size)
    if rows is not None:
        draws = draws[rows]
    return draws + (draws >= excluded)


@dataclass(frozen=True)
class Response:
    """What ``B`` shoppers answer to ``B`` shown images.

    Attributes:
        ranks: ``(B,) int64`` rank of each target w.r.t. its shown image (0 when it is shown).
        percentiles: ``(B,) float64`` rank percentiles ``1 - rank / (N - 1)``.
        captions: the ``B`` relative captions.
        tokens: ``(B, max_tokens) int64`` their token ids, padded with 0.
    """

    ranks: np.ndarray
    percentiles: np.ndarray
    captions: list[str]
    tokens: np.ndarray


class DialogModel:
    """One dialog turn, batched: rank, caption, encode and reward (see the module docstring).

    Args:
        catalog: the catalogue (one split) that image indices refer to.
        user: the simulated shopper; checked against ``catalog`` here.
        ranker: ranking engine over ``catalog.features``; built when ``None``.
        vocabulary: the words of the captions; ``user.vocabulary`` when ``None``.
        max_tokens: length of the token-id encoding of a caption.
        reward_fn: a key of :data:`REWARD_FUNCTIONS` or a reward function.

    Raises:
        ConfigurationError: an unknown reward.
        UserSimulatorError: a catalogue the user cannot describe.
    """

    def __init__(
        self,
        catalog: Catalog,
        user: UserSimulator,
        ranker: Ranker | None = None,
        vocabulary: Vocabulary | None = None,
        max_tokens: int = MAX_FEEDBACK_TOKENS,
        reward_fn: str | RewardFunction = "percentile",
    ) -> None:
        self.reward_fn = resolve_reward(reward_fn)
        self._builtin_reward = any(self.reward_fn is builtin for builtin in REWARD_FUNCTIONS.values())
        user.check_catalog(catalog)
        self.catalog = catalog
        self.user = user
        self.ranker = ranker if ranker is not None else Ranker(catalog.features, catalog.squared_norms)
        self.vocabulary = vocabulary if vocabulary is not None else user.vocabulary
        self.max_tokens = int(max_tokens)
        self.num_images = catalog.num_images
        self._calls = dict.fromkeys(CALL_PURPOSES, 0)

    def budget(self) -> InteractionBudget:
        """The captions the user simulator has written through this model so far, by purpose."""
        return InteractionBudget(self._calls["dialog"], self._calls["lookahead"])

    def ranks(self, targets: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """``(B,) int64`` exact rank of each target w.r.t. its shown image (no randomness).

        Args:
            targets: ``(B,) int64`` target indices.
            shown: ``(B,) int64`` shown image indices.
        """
        return self.ranker.target_ranks(shown, targets)

    def respond(
        self, targets: np.ndarray, shown: np.ndarray, rngs: Sequence[np.random.Generator], purpose: str = "dialog"
    ) -> Response:
        """The shoppers' answers to one turn of ``B`` dialogs (``B`` simulator calls, counted under ``purpose``).

        Args:
            targets: ``(B,) int64`` target indices.
            shown: ``(B,) int64`` shown image indices.
            rngs: ``B`` generators, one per dialog: the user's draws for dialog ``b`` come from
                ``rngs[b]`` only, so a batch behaves exactly like its dialogs played one by one.
            purpose: what the captions are for, one of :data:`CALL_PURPOSES` (``"lookahead"`` for
                imagined turns).

        Returns:
            The :class:`Response` (ranks, percentiles, captions, tokens).

        Raises:
            ConfigurationError: an unknown ``purpose``.
        """
        if purpose not in self._calls:
            raise ConfigurationError(f"unknown purpose {purpose!r} of a simulator call; choose one of {CALL_PURPOSES}")
        ranks = self.ranker.target_ranks(shown, targets)
        captions = self.user.describe(self.catalog, targets, shown, rngs)
        tokens = self.vocabulary.encode_batch(captions, self.max_tokens)
        self._calls[purpose] += len(captions)
        return Response(ranks, rank_percentile(ranks, self.num_images), captions, tokens)

    def reward(self, percentiles: np.ndarray, previous_percentiles: np.ndarray, found: np.ndarray) -> np.ndarray:
        """``(B,) float64`` rewards of a turn from the reward function, checked.

        Raises:
            ConfigurationError: a reward function that returned something else than ``B`` finite numbers.
        """
        rewards = self.reward_fn(percentiles, previous_percentiles, found)
        if self._builtin_reward:  # known to return (B,) float64 finite values
            return rewards
        try:
            rewards = np.asarray(rewards, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"reward function {self.reward_fn!r} returned non-numeric rewards: {error}"
            ) from None
        if rewards.shape != np.shape(percentiles) or not np.isfinite(rewards).all():
            raise ConfigurationError(
                f"reward function {self.reward_fn!r} must return {np.shape(percentiles)} finite rewards, "
                f"got shape {rewards.shape}: {rewards!r}"
            )
        return rewards
