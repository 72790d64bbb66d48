"""Mid-run checkpoints, interaction budgets and snapshots for Stable-Baselines3 training.

:class:`BudgetCallback` runs inside ``model.learn``: it counts the interaction budget (captions of
the user simulator, :class:`~dialog_env.dynamics.InteractionBudget`, read from the training
environment's turn model), logs it (``budget/simulator_calls``, ``budget/dialog_turns``,
``budget/lookahead_calls``: SB3's logger, so TensorBoard), stops training at a budget, keeps
snapshots at fixed budgets (:mod:`agents.snapshots`) and writes mid-run checkpoints:

| file | holds |
| --- | --- |
| ``last.zip`` | the model (SB3's format, read back by :func:`agents.sb3.load_model` without unpickling) |
| ``last.json`` | its environment steps and interaction budget |
| ``last-replay.npz`` | off-policy algorithms: the replay buffer's arrays (plain ``.npz``, no pickles) |

On-policy algorithms (PPO, A2C and sb3-contrib's) are checkpointed when a rollout starts, right
after an update; a stop request in the middle of a rollout writes the same weights and records
the rollout's first step, so a resumed run collects that rollout again and keeps the rollout grid
of an uninterrupted run (the captions of the abandoned part stay counted: they were spent).
Off-policy algorithms are checkpointed after any step, with their replay buffer. A resumed run
continues from the checkpoint's weights, optimizer state, step count and buffer, but its dialogs
restart (the environments are reset) and the random streams of the policy differ from an
uninterrupted run's: it reaches the same budget, not the same digits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.snapshots import SnapshotIndex
from agents.training import SB3_LAST_MODEL
from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError
from dialog_env.io import atomic_path, atomic_write_json, read_json_object
from dialog_env.vector import DialogRetrievalVectorEnv

__all__ = [
    "LAST_MODEL", "LAST_STATE", "LAST_REPLAY", "BudgetCallback", "load_replay_buffer", "read_last_state",
    "save_replay_buffer", "vec_env_budget",
]  # fmt: skip

#: Mid-run checkpoint files of an SB3 run in its checkpoint folder (see the module docstring).
LAST_MODEL, LAST_STATE, LAST_REPLAY = SB3_LAST_MODEL, "last.json", "last-replay.npz"
_REPLAY_ARRAYS = ("actions", "rewards", "dones", "timeouts")


class BudgetCallback(BaseCallback):
    """Counts, logs and acts on the interaction budget during ``model.learn`` (see the module docstring).

    Args:
        budget: the training environment's budget so far (e.g. ``envs.model.budget``).
        spent_before: the budget of the run before this process (a resumed run's), added to
            what ``budget`` counts from now on.
        checkpoint_dir: where ``last.*`` and ``snapshots/`` go.
        budget_calls: stop once the whole run's simulator calls reach this (``None``: never).
        checkpoint_every: environment steps between two mid-run checkpoints (0: none).
        snapshot_calls: budgets at which the model is copied to ``snapshots/``.
        progress: advanced by the environment steps of each vector step (e.g. ``tqdm``).
        stop_requested: asked after every vector step; ``True`` writes a checkpoint and stops.
    """

    def __init__(
        self,
        budget: Callable[[], InteractionBudget],
        spent_before: InteractionBudget,
        checkpoint_dir: str | Path,
        *,
        budget_calls: int | None = None,
        checkpoint_every: int = 0,
        snapshot_calls: tuple[int, ...] = (),
        progress: Any = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._budget = budget
        self._counted_from = budget()
        self.spent_before = spent_before
        self.checkpoint_dir = Path(checkpoint_dir)
        self.budget_calls = budget_calls
        self.checkpoint_every = int(checkpoint_every)
        self.snapshots = SnapshotIndex(self.checkpoint_dir, snapshot_calls, ".zip")
        self.progress = progress
        self.stop_requested = stop_requested
        self.stopped_by_request = False
        self.reached_budget = False
        self._last_checkpoint = -1
        self._rollout_start = 0

    def spent(self) -> InteractionBudget:
        """The whole run's budget so far."""
        return self.spent_before + (self._budget() - self._counted_from)

    def _on_training_start(self) -> None:
        self._last_checkpoint = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        self._rollout_start = self.model.num_timesteps
        if not isinstance(self.model, OffPolicyAlgorithm) and self._checkpoint_due():
            self.write_checkpoint()

    def _on_step(self) -> bool:
        if self.progress is not None:
            self.progress.update(self.training_env.num_envs)
        spent = self.spent()
        for key, value in spent.as_dict().items():
            self.logger.record(f"budget/{key}", value)
        for calls in self.snapshots.due(spent):
            self._save_model(self.snapshots.model_path(calls))
            self.snapshots.record(calls, spent, timesteps=int(self.model.num_timesteps))
        if isinstance(self.model, OffPolicyAlgorithm) and self._checkpoint_due():
            self.write_checkpoint()
        if self.stop_requested is not None and self.stop_requested():
            self.stopped_by_request = True
            self.write_checkpoint()
            return False
        if self.budget_calls is not None and spent.simulator_calls >= self.budget_calls:
            self.reached_budget = True
            return False
        return True

    def _checkpoint_due(self) -> bool:
        return self.checkpoint_every > 0 and self.model.num_timesteps - self._last_checkpoint >= self.checkpoint_every

    def _save_model(self, path: Path) -> None:
        with atomic_path(path, keep_suffix=True) as temporary:  # SB3's save keeps a .zip suffix
            self.model.save(temporary)

    def write_checkpoint(self) -> None:
        """Write ``last.zip``, its replay buffer (off-policy) and then ``last.json``, each atomically."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._save_model(self.checkpoint_dir / LAST_MODEL)
        replay = getattr(self.model, "replay_buffer", None)
        if replay is not None:
            save_replay_buffer(replay, self.checkpoint_dir / LAST_REPLAY)
        # On-policy: no update since the rollout began, so these weights are that step's.
        on_policy = not isinstance(self.model, OffPolicyAlgorithm)
        timesteps = self._rollout_start if on_policy else self.model.num_timesteps
        atomic_write_json(
            self.checkpoint_dir / LAST_STATE,
            {"timesteps": int(timesteps), "budget": self.spent().as_dict(), "replay_buffer": replay is not None},
        )
        self._last_checkpoint = self.model.num_timesteps


def vec_env_budget(env: VecEnv) -> Callable[[], InteractionBudget]:
    """The interaction budget counter of an SB3 vector environment of dialogs.

    :class:`~agents.sb3_vec.NativeDialogVecEnv` has one turn model for all its dialogs; a
    ``DummyVecEnv`` of single environments has one per environment, summed.
    """
    native = getattr(env, "envs", None)
    if isinstance(native, DialogRetrievalVectorEnv):
        return native.model.budget
    models = list({id(model): model for model in env.get_attr("model")}.values())
    return lambda: sum((model.budget() for model in models), InteractionBudget())


def read_last_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The checked ``last.json`` of a run: ``timesteps``, ``budget`` (an :class:`InteractionBudget`), ``replay_buffer``.

    ``timesteps`` is where training continues (for on-policy algorithms, the first step of the
    rollout the checkpoint was written in).

    Raises:
        ConfigurationError: missing, unreadable, or values of the wrong kind.
    """
    path = Path(checkpoint_dir) / LAST_STATE
    data = read_json_object(path, "SB3 checkpoint state")
    timesteps = data.get("timesteps")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 0:
        raise ConfigurationError(f"{str(path)!r}: 'timesteps' must be an integer >= 0, got {timesteps!r}")
    if not isinstance(data.get("replay_buffer"), bool):
        raise ConfigurationError(f"{str(path)!r}: 'replay_buffer' must be true or false")
    return {"timesteps": timesteps, "budget": InteractionBudget.from_dict(data.get("budget")),
            "replay_buffer": data["replay_buffer"]}  # fmt: skip


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    arrays = {name: getattr(buffer, name) for name in _REPLAY_ARRAYS}
    if isinstance(buffer, DictReplayBuffer):
        for side in ("observations", "next_observations"):
            for key, value in getattr(buffer, side).items():
                arrays[f"{side}/{key}"] = value
    else:
        arrays["observations"] = buffer.observations
        if not buffer.optimize_memory_usage:
            arrays["next_observations"] = buffer.next_observations
    return arrays


def save_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> None:
    """Write a replay buffer's arrays, position and fill state to an ``.npz`` atomically (no pickles).

    SB3's own ``save_replay_buffer`` pickles the buffer; reading such a file runs code. This
    writes plain arrays that :func:`load_replay_buffer` checks against a fresh buffer.
    """
    arrays = _buffer_arrays(buffer)
    with atomic_path(path, keep_suffix=True) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, pos=np.int64(buffer.pos), full=np.bool_(buffer.full), **arrays)


def load_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> None:
    """Fill ``buffer`` (a fresh one of the same spaces and size) from :func:`save_replay_buffer`'s file.

    Raises:
        ConfigurationError: missing or unreadable, or arrays whose names, shapes or dtypes do not
            fit ``buffer``.
    """
    path = Path(path)
    expected = _buffer_arrays(buffer)
    try:
        with np.load(path) as stored:  # plain arrays only: np.load refuses pickled objects by default
            names = set(stored.files)
            wanted = set(expected) | {"pos", "full"}
            if names != wanted:
                raise ConfigurationError(
                    f"replay buffer {str(path)!r} holds {sorted(names)}, this model's buffer needs {sorted(wanted)}"
                )
            loaded = {name: stored[name] for name in names}
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"replay buffer {str(path)!r} is not readable: {error}") from error
    for name, array in expected.items():
        if loaded[name].shape != array.shape or loaded[name].dtype != array.dtype:
            raise ConfigurationError(
                f"replay buffer {str(path)!r}: {name!r} is {loaded[name].dtype}{loaded[name].shape}, this model's "
                f"buffer needs {array.dtype}{array.shape} (another buffer size, number of envs or catalogue?)"
            )
    pos = int(loaded["pos"])
    if not 0 <= pos < buffer.buffer_size:
        raise ConfigurationError(f"replay buffer {str(path)!r}: position {pos} outside 0..{buffer.buffer_size - 1}")
    for name, array in expected.items():
        array[...] = loaded[name]  # the buffer's own arrays, filled in place
    buffer.pos, buffer.full = pos, bool(loaded["full"])
