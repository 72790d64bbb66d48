"""The dialog log: one JSON object per line, appended as dialogs happen, never rewritten.

Every event is its own line, written and flushed to disk (``fsync``) under a file lock before the
page answers, so a closed tab, a second tab or a crash loses nothing that was already shown:

- ``{"event": "start", "dialog": ID, "mode": ..., "target": i, "target_id": ..., "catalog": ...,
  "split": ..., "agent": ..., "max_turns": T, "vocabulary_size": V, "time": ...}``
- ``{"event": "turn", "dialog": ID, "turn": t, "shown": i, "shown_id": ..., "rank": r,
  "percentile": p, "feedback": text, "source": "human" | "simulator", "unknown_words": [...],
  "time": ...}``
- ``{"event": "end", "dialog": ID, "found": bool, "turns": t, "reason": "found" | "out of turns" |
  "gave up", "time": ...}``

:func:`read_dialogs` reads a log back into whole dialogs (validated: a log is a file a person
may have been handed), keeping unfinished ones and saying so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from dialog_env.errors import DataFormatError

__all__ = ["LOG_VERSION", "DialogLog", "LoggedDialog", "LoggedTurn", "read_dialogs"]

#: Version of the log's line format (the ``"version"`` field of every line).
LOG_VERSION = 1
_MAX_LINE = 1 << 20  # a line longer than 1 MiB is not ours


class DialogLog:
    """Append-only JSONL log of dialogs, safe for several threads and processes.

    Args:
        path: the log file (created with its folder when missing; existing lines are kept).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def append(self, event: str, dialog: str, **values: Any) -> dict[str, Any]:
        """Write one event line and flush it to disk; returns the record written."""
        record = {"version": LOG_VERSION, "event": event, "dialog": dialog, **values, "time": round(time.time(), 3)}
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return record


@dataclass
class LoggedTurn:
    """One turn of a logged dialog: the image shown, the target's rank, the feedback on it."""

    turn: int
    shown: int
    rank: int
    feedback: str
    source: str
    unknown_words: list[str] = field(default_factory=list)


@dataclass
class LoggedDialog:
    """A dialog read back from a log."""

    dialog: str
    mode: str
    target: int
    catalog: str | None
    split: str
    agent: str | None
    max_turns: int
    turns: list[LoggedTurn] = field(default_factory=list)
    found: bool | None = None  # None: the dialog has no end line (unfinished)
    reason: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the log holds the dialog's end."""
        return self.found is not None


def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise DataFormatError(f"{where}: field {name!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_dialogs(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[LoggedDialog]:
    """The dialogs of one or several logs, in the order they started.

    Raises:
        DataFileNotFoundError: a log does not exist.
        DataFormatError: a line that is not one of the log's records (the message names the file
            and line), a turn or end of a dialog that never started, turns out of order.
    """
    from dialog_env.errors import DataFileNotFoundError

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    dialogs: dict[str, LoggedDialog] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataFileNotFoundError(f"no dialog log at {str(path)!r}")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                where = f"{path}:{number}"
                if len(line) > _MAX_LINE:
                    raise DataFormatError(f"{where}: line of {len(line)} characters is not a dialog log record")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataFormatError(f"{where}: not JSON ({error.msg})") from None
                if not isinstance(record, dict) or record.get("version") != LOG_VERSION:
                    raise DataFormatError(f"{where}: not a version-{LOG_VERSION} dialog log record")
                _read_record(record, dialogs, where)
    return list(dialogs.values())


def _read_record(record: dict[str, Any], dialogs: dict[str, LoggedDialog], where: str) -> None:
    event = record.get("event")
    name = _field(record, "dialog", str, where)
    if event == "start":
        if name in dialogs:
            raise DataFormatError(f"{where}: dialog {name!r} starts twice")
        catalog = record.get("catalog")
        agent = record.get("agent")
        dialogs[name] = LoggedDialog(
            dialog=name,
            mode=_field(record, "mode", str, where),
            target=_field(record, "target", int, where),
            catalog=catalog if isinstance(catalog, str) else None,
            split=_field(record, "split", str, where),
            agent=agent if isinstance(agent, str) else None,
            max_turns=_field(record, "max_turns", int, where),
        )
        return
    if name not in dialogs:
        raise DataFormatError(f"{where}: {event!r} of dialog {name!r}, which never started")
    dialog = dialogs[name]
    if dialog.finished:
        raise DataFormatError(f"{where}: {event!r} of dialog {name!r} after its end")
    if event == "turn":
        turn = _field(record, "turn", int, where)
        if turn != len(dialog.turns):
            raise DataFormatError(f"{where}: dialog {name!r} turn {turn} out of order (expected {len(dialog.turns)})")
        unknown = record.get("unknown_words", [])
        if not isinstance(unknown, list) or not all(isinstance(word, str) for word in unknown):
            raise DataFormatError(f"{where}: field 'unknown_words' must be a list of words")
        dialog.turns.append(
            LoggedTurn(
                turn=turn,
                shown=_field(record, "shown", int, where),
                rank=_field(record, "rank", int, where),
                feedback=_field(record, "feedback", str, where),
                source=_field(record, "source", str, where),
                unknown_words=unknown,
            )
        )
    elif event == "end":
        dialog.found = _field(record, "found", bool, where)
        dialog.reason = _field(record, "reason", str, where)
    else:
        raise DataFormatError(f"{where}: unknown event {event!r}")
