"""A person in the dialog: a local web page to play as the shopper or as the search engine, its log, and export.

- ``python -m dialog_env.play --agent runs/paper-s1``: serve the page on http://127.0.0.1:8000
  (:mod:`dialog_env.play.server`, dialogs in :mod:`dialog_env.play.session`).
- every dialog is appended to a JSONL log (:mod:`dialog_env.play.log`);
- ``python -m dialog_env.play export --log dialogs.jsonl --out DIR``: the logs as a Minari dataset
  (:mod:`dialog_env.play.export`).

The web framework (Flask) and Minari are optional: ``pip install -e ".[play]"``.
"""

from dialog_env.play.log import DialogLog, LoggedDialog, LoggedTurn, read_dialogs
from dialog_env.play.session import MODES, PlayDialog, PlayError, PlayHost, QueuedFeedback

__all__ = [
    "MODES",
    "DialogLog",
    "LoggedDialog",
    "LoggedTurn",
    "PlayDialog",
    "PlayError",
    "PlayHost",
    "QueuedFeedback",
    "read_dialogs",
]
