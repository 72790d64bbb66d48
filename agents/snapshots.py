"""Snapshots of a model at fixed interaction budgets, for learning curves and fixed-budget tracks.

Agents are compared at equal *simulator calls* (captions of the user simulator, look-ahead
included: :class:`~dialog_env.dynamics.InteractionBudget`). A training run given budgets
``snapshot_calls`` keeps a copy of its model after the first iteration (paper's agent) or vector
step (Stable-Baselines3) at which its spent budget reaches each of them, in
``<checkpoint folder>/snapshots/``:

| file | holds |
| --- | --- |
| ``calls-<budget>.pt`` / ``.zip`` | the model (the paper's checkpoint format / an SB3 model) |
| ``index.json`` | per budget: the file, the budget actually spent (>= the budget), where in training |

The index is written (atomically) after the model file, so an entry always names a complete file;
a run resumed from before a snapshot writes it again (training repeats its numbers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError
from dialog_env.io import atomic_write_json, read_json_object

__all__ = ["SNAPSHOT_FOLDER", "SnapshotIndex", "check_snapshot_calls", "read_snapshot_index", "snapshot_path"]

#: Sub-folder of a checkpoint folder that holds the snapshots.
SNAPSHOT_FOLDER = "snapshots"
_INDEX = "index.json"


def check_snapshot_calls(values: Iterable[int]) -> tuple[int, ...]:
    """The budgets, sorted and without repeats.

    Raises:
        ConfigurationError: a budget that is not an integer >= 1.
    """
    budgets = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"snapshot budgets must be integers >= 1 (simulator calls), got {value!r}")
        budgets.append(value)
    return tuple(sorted(set(budgets)))


def snapshot_path(checkpoint_dir: str | Path, calls: int, suffix: str) -> Path:
    """Where the snapshot at ``calls`` simulator calls lives (``suffix``: ``".pt"`` or ``".zip"``)."""
    return Path(checkpoint_dir) / SNAPSHOT_FOLDER / f"calls-{int(calls)}{suffix}"


class SnapshotIndex:
    """The ``index.json`` of a snapshot folder: which budgets are written, and what each holds.

    Args:
        checkpoint_dir: the run's checkpoint folder (snapshots go to its ``snapshots/``).
        budgets: the budgets this run keeps (:func:`check_snapshot_calls`).
        suffix: the model files' suffix.

    Raises:
        ConfigurationError: an index that is not this module's JSON.
    """

    def __init__(self, checkpoint_dir: str | Path, budgets: Iterable[int], suffix: str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.budgets = check_snapshot_calls(budgets)
        self.suffix = suffix
        self.path = self.checkpoint_dir / SNAPSHOT_FOLDER / _INDEX
        self.entries: dict[int, dict[str, Any]] = read_snapshot_index(self.checkpoint_dir)

    def due(self, spent: InteractionBudget) -> list[int]:
        """The budgets reached by ``spent`` whose snapshot is not written yet (smallest first)."""
        return [b for b in self.budgets if b <= spent.simulator_calls and b not in self.entries]

    def model_path(self, calls: int) -> Path:
        """The model file of the snapshot at ``calls``; its folder is created."""
        path = snapshot_path(self.checkpoint_dir, calls, self.suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, calls: int, spent: InteractionBudget, **where: Any) -> None:
        """Add the snapshot at ``calls`` (its model file is written) and rewrite the index.

        Args:
            calls: the snapshot's budget.
            spent: the budget actually spent when the model was copied.
            **where: where in training (``stage``, ``iteration``, ``timesteps``...), JSON values.
        """
        self.entries[int(calls)] = {"file": self.model_path(calls).name, "budget": spent.as_dict(), **where}
        atomic_write_json(self.path, {"snapshots": {str(k): v for k, v in sorted(self.entries.items())}})


def read_snapshot_index(checkpoint_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Budget -> entry of a run's snapshot index (empty when it has none), with each entry checked.

    Raises:
        ConfigurationError: unreadable JSON, or entries without a file name and a budget.
    """
    path = Path(checkpoint_dir) / SNAPSHOT_FOLDER / _INDEX
    if not path.is_file():
        return {}
    data = read_json_object(path, "snapshot index")
    try:
        raw = data["snapshots"]
        if not isinstance(raw, Mapping):
            raise TypeError("'snapshots' is not an object")
        entries = {int(key): dict(value) for key, value in raw.items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{str(path)!r} is not a snapshot index: {error}") from error
    for calls, entry in entries.items():
        name = entry.get("file")
        if not isinstance(name, str) or "/" in name or "\\" in name or not name.startswith("calls-"):
            raise ConfigurationError(f"{str(path)!r}: snapshot {calls} names no file of its folder: {name!r}")
        entry["budget"] = InteractionBudget.from_dict(entry.get("budget")).as_dict()
    return entries
