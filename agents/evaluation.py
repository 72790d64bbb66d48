"""The one evaluation loop shared by every agent, benchmark and script, and its statistics.

:func:`evaluate` replays a fixed :class:`EpisodeSet` (the same targets and first images for every
agent, see :mod:`agents.base` for the agent protocol) and records per-turn metrics;
:func:`summarize` adds bootstrap confidence intervals and :func:`paired_difference` compares two
agents on the same episodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Agent
from dialog_env.dynamics import uniform_except
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream
from dialog_env.ranking import rank_percentile

__all__ = [
    "EpisodeSet",
    "EvaluationResult",
    "evaluate",
    "summarize",
    "format_turn_table",
    "metric_values",
    "paired_difference",
    "RECALL_AT",
]

#: The recall cut-offs reported for agents that rank the catalogue (Recall@10, Recall@50).
RECALL_AT = (10, 50)


@dataclass(frozen=True)
class EpisodeSet:
    """A fixed set of evaluation episodes: the same targets and first images for every agent.

    Attributes:
        targets: ``(E,) int64`` target indices within the split.
        initials: ``(E,) int64`` first shown images (never the target).
        seed: the seed they were drawn with.
    """

    targets: np.ndarray
    initials: np.ndarray
    seed: int

    @classmethod
    def draw(cls, num_images: int, num_episodes: int, seed: int) -> EpisodeSet:
        """Draw ``num_episodes`` episodes uniformly over a split of ``num_images`` images."""
        if num_images < 2:
            raise ConfigurationError(f"episodes need a split of at least 2 images, got {num_images}")
        if num_episodes < 1:
            raise ConfigurationError(f"num_episodes must be >= 1, got {num_episodes}")
        rng = stream(seed, "evaluation_episodes")  # a stream of its own, not the env's
        targets = rng.integers(num_images, size=num_episodes)
        initials = uniform_except(rng, num_images, targets, size=num_episodes)
        return cls(targets.astype(np.int64), initials.astype(np.int64), int(seed))

    def __len__(self) -> int:
        return int(self.targets.size)


@dataclass
class EvaluationResult:
    """Per-episode, per-turn metrics of one evaluation (turns ``1..T`` in columns ``0..T-1``).

    After the target is found the dialog ends; later turns carry the values of the turn it was
    found (rank percentile 1, success 1, the agent's ranking at that turn). A dialog that the
    shopper ended (with the environments' ``patience`` or ``accept_rank``, see
    :mod:`dialog_env.tolerance`) likewise carries its last turn's values, with success 0.

    Attributes:
        agent: agent name.
        shown_percentile: ``(E, T) float64`` rank percentile of the target w.r.t. the shown image.
        success: ``(E, T) bool``, the target was shown at or before the turn.
        ranking_percentile: ``(E, T) float64``, the target's percentile in the agent's own ranking,
            or ``None`` for agents that do not rank the catalogue.
        ranking_rank: ``(E, T) int64`` the target's rank in the agent's ranking, or ``None``.
        num_images: split size ``N``.
        satisfied: ``(E, T) bool``, the target was shown *or* the shopper accepted an alternative
            at or before the turn; ``None`` unless the environment had ``accept_rank``.
        left: ``(E, T) bool``, the shopper left at or before the turn; ``None`` unless the
            environment had ``patience``.
    """

    agent: str
    shown_percentile: np.ndarray
    success: np.ndarray
    ranking_percentile: np.ndarray | None
    ranking_rank: np.ndarray | None
    num_images: int
    extra: dict[str, Any] = field(default_factory=dict)
    satisfied: np.ndarray | None = None
    left: np.ndarray | None = None

    @property
    def num_turns(self) -> int:
        """The number of turns ``T`` evaluated."""
        return int(self.success.shape[1])


def evaluate(
    agent: Agent,
    episodes: EpisodeSet,
    env_kwargs: Mapping[str, Any] | None = None,
    max_turns: int = 10,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> EvaluationResult:
    """Play every episode of ``episodes`` with ``agent`` through the native vector environment.

    Args:
        agent: the agent.
        episodes: the fixed episodes (indices into the environment's split).
        env_kwargs: arguments of ``gym.make_vec("DialogRetrieval-v0", ...)`` (``catalog``,
            ``split``, ``user``...); ``max_turns`` and ``expose_target`` are set here.
        max_turns: turns per dialog ``T``.
        batch_size: dialogs played at once.
        seed: seed of the user simulator's randomness (dialog ``i`` of a batch gets ``seed + i``).
        progress: print one line per batch.

    Returns:
        The per-turn metrics.
    """
    env_kwargs = dict(env_kwargs or {})
    for reserved in ("max_turns", "expose_target", "num_envs"):
        if reserved in env_kwargs:
            raise ConfigurationError(f"evaluate() sets {reserved!r} itself; remove it from env_kwargs")
    num_episodes = len(episodes)
    shown = np.zeros((num_episodes, max_turns))
    success = np.zeros((num_episodes, max_turns), dtype=bool)
    # What the shopper options add: the target or an accepted alternative / the shopper left.
    ended_by_shopper = {key: np.zeros((num_episodes, max_turns), dtype=bool) for key in ("is_accepted", "shopper_left")}
    ranking: np.ndarray | None = None
    envs_by_size: dict[int, gym.vector.VectorEnv] = {}
    for start in range(0, num_episodes, batch_size):
        stop = min(start + batch_size, num_episodes)
        size = stop - start
        if size not in envs_by_size:
            envs_by_size[size] = gym.make_vec(
                "DialogRetrieval-v0",
                num_envs=size,
                max_turns=max_turns,
                vectorization_mode="vector_entry_point",
                **env_kwargs,
            )
        envs = envs_by_size[size]
        catalog = envs.unwrapped.catalog if hasattr(envs, "unwrapped") else envs.catalog
        if episodes.targets.max() >= catalog.num_images:
            raise ConfigurationError(
                f"episode targets go up to {int(episodes.targets.max())}, but the split has {catalog.num_images} images"
            )
        targets = episodes.targets[start:stop]
        observations, infos = envs.reset(
            seed=seed + start, options={"target": targets, "initial": episodes.initials[start:stop]}
        )
        agent.reset(catalog, size)
        done = np.zeros(size, dtype=bool)
        for turn in range(max_turns):
            actions = np.asarray(agent.act(observations, infos), dtype=np.int64)
            ranks = agent.rank_targets(targets)
            if ranks is not None:
                if ranking is None:
                    ranking = np.zeros((num_episodes, max_turns), dtype=np.int64)
                ranking[start:stop, turn] = np.where(done, ranking[start:stop, turn - 1] if turn else 0, ranks)
            observations, _, terminations, truncations, infos = envs.step(actions)
            # Dialogs that ended earlier were autoreset by this step: keep their final values.
            current = np.asarray(infos["rank_percentile"], dtype=np.float64)
            found = np.asarray(infos["is_success"], dtype=bool) & ~done
            if turn:
                current = np.where(done, shown[start:stop, turn - 1], current)
            shown[start:stop, turn] = current
            success[start:stop, turn] = found | (success[start:stop, turn - 1] if turn else False)
            for key, flags in ended_by_shopper.items():
                now = np.asarray(infos.get(key, np.zeros(size, dtype=bool)), dtype=bool) & ~done
                flags[start:stop, turn] = now | (flags[start:stop, turn - 1] if turn else False)
            done |= np.asarray(terminations, dtype=bool) | np.asarray(truncations, dtype=bool)
        if progress:
            print(f"  evaluated {stop}/{num_episodes} episodes", flush=True)
    tolerance = envs.unwrapped.tolerance if hasattr(envs, "unwrapped") else envs.tolerance
    for envs in envs_by_size.values():
        envs.close()
    num_images = int(catalog.num_images)
    return EvaluationResult(
        agent=agent.name,
        shown_percentile=shown,
        success=success,
        ranking_percentile=None if ranking is None else rank_percentile(ranking, num_images),
        ranking_rank=ranking,
        num_images=num_images,
        satisfied=success | ended_by_shopper["is_accepted"] if tolerance.accept_rank is not None else None,
        left=ended_by_shopper["shopper_left"] if tolerance.patience is not None else None,
    )


def _bootstrap_interval(values: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over episodes (axis 0) of ``(E,)`` values."""
    indices = rng.integers(values.shape[0], size=(resamples, values.shape[0]))
    means = values[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def metric_values(result: EvaluationResult) -> dict[str, np.ndarray]:
    """Every per-episode, per-turn metric of a result as ``(E, T) float64`` arrays, by name.

    The names: ``shown_percentile``, ``success`` (exact: the target was shown), for agents that
    rank the catalogue ``ranking_percentile``, ``recall@10``, ``recall@50``, and with the
    environments' shopper options ``satisfied`` (the target or an accepted alternative) and
    ``left`` (the shopper left), measures of their own, never folded into ``success``.
    """
    metrics: dict[str, np.ndarray] = {
        "shown_percentile": result.shown_percentile,
        "success": result.success.astype(np.float64),
    }
    if result.satisfied is not None:
        metrics["satisfied"] = result.satisfied.astype(np.float64)
    if result.left is not None:
        metrics["left"] = result.left.astype(np.float64)
    if result.ranking_rank is not None:
        metrics["ranking_percentile"] = np.asarray(result.ranking_percentile, dtype=np.float64)
        for k in RECALL_AT:
            metrics[f"recall@{k}"] = (result.ranking_rank < k).astype(np.float64)
    return metrics


def paired_difference(
    a: EvaluationResult, b: EvaluationResult, metric: str, turn: int, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of ``a - b`` for one metric at one turn (1-based) over the *same* episodes, with a 95% interval.

    The interval is a paired bootstrap (episodes resampled jointly, which is tighter than
    comparing two separate intervals).

    Raises:
        ConfigurationError: the results are not over the same number of episodes, or lack the metric.
    """
    values_a, values_b = metric_values(a), metric_values(b)
    if metric not in values_a or metric not in values_b:
        raise ConfigurationError(f"metric {metric!r} is not available for both {a.agent!r} and {b.agent!r}")
    if values_a[metric].shape != values_b[metric].shape:
        raise ConfigurationError(f"results of {a.agent!r} and {b.agent!r} are not over the same episodes and turns")
    difference = values_a[metric][:, turn - 1] - values_b[metric][:, turn - 1]
    low, high = _bootstrap_interval(difference, np.random.default_rng(seed), resamples)
    return {"mean": float(difference.mean()), "low": low, "high": high}


def summarize(result: EvaluationResult, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-turn means with 95% bootstrap confidence intervals (over episodes).

    Returns:
        ``{"agent", "episodes", "turns": [{"turn", "<metric>": {"mean", "low", "high"}}, ...]}``
        with metrics ``shown_percentile`` and ``success``, and for agents that rank the catalogue
        ``ranking_percentile``, ``recall@10`` and ``recall@50``.
    """
    rng = np.random.default_rng(seed)
    metrics = metric_values(result)
    turns = []
    for turn in range(result.num_turns):
        row: dict[str, Any] = {"turn": turn + 1}
        for name, values in metrics.items():
            low, high = _bootstrap_interval(values[:, turn], rng, resamples)
            row[name] = {"mean": float(values[:, turn].mean()), "low": low, "high": high}
        turns.append(row)
    return {
        "agent": result.agent,
        "episodes": int(result.success.shape[0]),
        "num_images": result.num_images,
        "turns": turns,
    }


def format_turn_table(summary: Mapping[str, Any]) -> str:
    """A Markdown table of :func:`summarize`'s output: one row per turn, mean [95% CI] per metric."""
    names = [k for k in summary["turns"][0] if k != "turn"]
    header = "| turn | " + " | ".join(_label(n) for n in names) + " |"
    lines = [header, "|" + " --- |" * (len(names) + 1)]
    for row in summary["turns"]:
        cells = [f"{100 * row[n]['mean']:.1f} [{100 * row[n]['low']:.1f}, {100 * row[n]['high']:.1f}]" for n in names]
        lines.append(f"| {row['turn']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(metric: str) -> str:
    return {
        "shown_percentile": "shown-image rank pct. (%)",
        "success": "success by turn (%)",
        "ranking_percentile": "agent ranking pct. (%)",
        "recall@10": "R@10 (%)",
        "recall@50": "R@50 (%)",
        "satisfied": "target or accepted alternative (%)",
        "left": "shopper left (%)",
    }.get(metric, metric)
