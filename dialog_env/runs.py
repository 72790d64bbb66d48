"""Run folders: one writer at a time, names that stay inside their parent, nothing left by a refused start.

``train_agent.py`` and ``train_captioner.py`` write checkpoints, logs and metrics into one folder
per run. Two processes writing one folder would mix their files (two seeds in one
``metrics.json``) and could remove each other's temporary checkpoints, so each run holds an
exclusive lock on its folder (``filelock``: an OS-level lock that dies with its process, even on
``kill -9``) for as long as it writes there. A second process fails at once with an error naming
the first one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from dialog_env.errors import ConfigurationError, DialogEnvError

__all__ = ["LOCK_NAME", "OWNER_NAME", "RunFolder", "check_folder_name", "check_parent_folder"]

#: The lock file inside a run folder (held while a process writes there).
LOCK_NAME = ".lock"
#: Who holds the lock: pid, host, command and start time, as JSON (for the other process's error).
OWNER_NAME = ".lock-owner.json"


def check_folder_name(name: str, flag: str = "--run-name") -> str:
    """``name`` if it is one folder name: no path separator, not ``.`` or ``..``, not absolute, not empty.

    Raises:
        ConfigurationError: ``name`` would place the run elsewhere than directly in its parent folder.
    """
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or any(s in name for s in separators)
        or "\0" in name
    ):
        raise ConfigurationError(
            f"{flag} must be one folder name (no '/', not '.' or '..', not absolute, not empty), got {name!r}"
        )
    return name


def check_parent_folder(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a ``Path``, if it is a folder or does not exist yet.

    Raises:
        ConfigurationError: ``path`` (or one of its parents) is a file.
    """
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise ConfigurationError(f"{flag} {str(path)!r}: {str(part)!r} is a file, expected a folder")
    return path


class RunFolder:
    """An exclusively locked run folder, created if needed.

    ``with RunFolder(path) as folder:`` creates ``path`` (and its parents), takes the lock at once
    or raises, and records the owner. If the body raises a project error
    (:class:`~dialog_env.errors.DialogEnvError`: bad arguments, an unreadable catalogue, nothing to
    resume) before :meth:`started` was called, and this process created the folder, the folder is
    removed again, so a refused start leaves nothing behind. Call :meth:`started` once real work
    has begun, to keep the folder whatever happens next.

    Args:
        path: the run folder.
        what: how messages name the writer, e.g. ``"train_agent.py"``.

    Raises:
        ConfigurationError: another live process holds the folder (its pid and command are named),
            or ``path`` is a file.
    """

    def __init__(self, path: str | os.PathLike[str], what: str = "a run") -> None:
        self.path = Path(path)
        self.what = what
        self._created = False
        self._started = False
        self._lock: FileLock | None = None

    def __enter__(self) -> RunFolder:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"run folder {str(self.path)!r} is a file, expected a folder")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigurationError(
                f"run folder {str(self.path)!r} is in use by {self._owner()}; wait for it to finish, stop it, "
                f"or choose another run name / output folder"
            ) from None
        self._lock = lock
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": time.time(),
        }
        (self.path / OWNER_NAME).write_text(json.dumps(owner) + "\n")
        return self

    def started(self) -> None:
        """Work has begun: keep the folder even if a later step raises."""
        self._started = True

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._lock is not None
        refused = isinstance(error, DialogEnvError) and not self._started
        (self.path / OWNER_NAME).unlink(missing_ok=True)
        if refused and self._created:
            # Removed while still locked: no other process can have written here meanwhile.
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()

    def _owner(self) -> str:
        """The holder of the lock, as its owner file describes it."""
        try:
            owner: dict[str, Any] = json.loads((self.path / OWNER_NAME).read_text())
        except (OSError, ValueError):
            return f"another {self.what} process (it is starting; no owner recorded yet)"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("started", 0))))
        return f"process {owner.get('pid')} on {owner.get('host')} ({owner.get('command')!r}, started {started})"
