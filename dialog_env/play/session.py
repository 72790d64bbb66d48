"""Dialogs with a person in them: the person as the shopper, or the person as the retrieval system.

Two modes, both played through the same vector environment (one dialog, autoreset off) as every
agent, so ranks, vocabulary and turn limits mean what they mean everywhere else:

- ``"shopper"``: the person has a target shoe in mind (shown to them) and types how it differs
  from the image the agent shows; the agent (a trained paper's agent) reads the words with its
  own vocabulary (words it does not know become ``<unk>``, and the person is told which) and
  shows another image. The feedback reaches the environment through :class:`QueuedFeedback`, a
  user "simulator" that says what the person typed.
- ``"agent"``: the person plays the retrieval system against the simulated shopper: they see the
  shopper's words (never the target), pick the next image from a page of candidates, and the
  simulator answers.

Every turn is appended to the :class:`~dialog_env.play.log.DialogLog` before the page shows it.
A :class:`PlayHost` holds the catalogue, the agent and the dialogs in progress; each dialog has
its own lock and a turn counter, so a double submit or a stale second tab cannot play a turn twice.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, DialogEnvError, UserSimulatorError
from dialog_env.play.log import DialogLog
from dialog_env.random_streams import stream
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary, tokenize
from dialog_env.users.base import UserSimulator
from dialog_env.vector import DialogRetrievalVectorEnv

__all__ = ["MAX_FEEDBACK_CHARACTERS", "MODES", "PlayError", "PlayHost", "PlayDialog", "QueuedFeedback"]

#: Play modes: the person as the shopper, or the person as the retrieval system.
MODES = ("shopper", "agent")
#: Longest feedback accepted from the page, in characters.
MAX_FEEDBACK_CHARACTERS = 300


class PlayError(DialogEnvError, ValueError):
    """What the person did cannot be played (empty feedback, a stale turn...): the message is for them."""


class QueuedFeedback(UserSimulator):
    """A "user simulator" that says words given to it beforehand: what a person typed, or a log's words.

    Each call takes the next ``B`` texts of :attr:`queue`, in order.

    Args:
        vocabulary: the words the environment encodes feedback with (e.g. the agent's).
    """

    name = "queued"

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = vocabulary
        self.queue: list[str] = []

    @property
    def vocabulary(self) -> Vocabulary:
        """The words feedback is encoded with."""
        return self._vocabulary

    def describe(
        self, catalog: Catalog, targets: np.ndarray, shown: np.ndarray, rngs: Sequence[np.random.Generator]
    ) -> list[str]:
        """The next ``B`` queued texts.

        Raises:
            UserSimulatorError: fewer than ``B`` texts queued.
        """
        if len(self.queue) < len(targets):
            raise UserSimulatorError(f"{len(targets)} captions asked for, {len(self.queue)} queued")
        texts, self.queue = self.queue[: len(targets)], self.queue[len(targets) :]
        return texts


@dataclass
class PlayDialog:
    """One dialog in progress and what the page shows of it.

    Attributes:
        dialog: the dialog's id (in the page's address and in the log).
        mode: ``"shopper"`` or ``"agent"``.
        target: the target's index in the split.
        shown: images shown so far, turn 0 first (in ``"shopper"`` mode, the last one awaits feedback).
        feedback: the feedback on each of them (in ``"shopper"`` mode, one fewer than ``shown``).
        ranks: the target's rank with respect to each of them, as far as played.
        unknown_words: per feedback, the words the agent's vocabulary does not know.
        turn: the turn the next submission must name (guards against double submits and stale tabs).
        over: the dialog ended; ``found`` says whether the target was shown.
        candidates: in ``"agent"`` mode, the images offered for the next pick.
    """

    dialog: str
    mode: str
    target: int
    shown: list[int] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    unknown_words: list[list[str]] = field(default_factory=list)
    turn: int = 0
    over: bool = False
    found: bool = False
    reason: str = ""
    candidates: list[int] = field(default_factory=list)
    pages: int = 0
    message: str = ""
    seed: int = 0
    env: DialogRetrievalVectorEnv | None = None
    history: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = field(default_factory=list)
    pending_end: tuple[bool, str] | None = None
    observations: dict[str, np.ndarray] | None = None
    infos: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class PlayHost:
    """The catalogue, the agent, the log and the dialogs in progress of one play server.

    Args:
        catalog: the catalogue (all splits).
        log: where dialogs are appended.
        agent: a trained agent (:class:`~agents.base.Agent`) for ``"shopper"`` mode, or ``None``
            (then only ``"agent"`` mode can be played).
        vocabulary: the words the agent reads (``"shopper"`` mode); the simulator's otherwise.
        user: the simulated shopper of ``"agent"`` mode and its keyword arguments.
        max_turns: turns per dialog after the first image.
        candidates: images offered per page in ``"agent"`` mode.
        seed: seed of the targets, first images and candidate pages.
        split: the split played (what the agent searches; image indices are within it).
        catalog_name, agent_name: recorded in the log (the catalogue's file, ``None`` for the synthetic default).
    """

    def __init__(
        self,
        catalog: Catalog,
        log: DialogLog,
        *,
        agent: Any | None = None,
        vocabulary: Vocabulary | None = None,
        user: str = "rule",
        user_kwargs: dict[str, Any] | None = None,
        max_turns: int = 10,
        candidates: int = 24,
        seed: int = 0,
        catalog_name: str | None = None,
        split: str = "test",
        agent_name: str | None = None,
    ) -> None:
        if split not in catalog.splits:
            raise ConfigurationError(
                f"catalogue {catalog.name!r} has no split {split!r}; it has {list(catalog.splits)}"
            )
        self.full_catalog = catalog
        catalog = catalog.select(split)
        if max_turns < 1:
            raise ConfigurationError(f"max_turns must be >= 1, got {max_turns}")
        if not 1 <= candidates <= catalog.num_images - 1:
            raise ConfigurationError(f"candidates must be in 1..{catalog.num_images - 1}, got {candidates}")
        if agent is not None and vocabulary is None:
            raise ConfigurationError("an agent needs the vocabulary it reads (the checkpoint's)")
        self.catalog = catalog
        self.log = log
        self.agent = agent
        self.vocabulary = vocabulary
        self.user = user
        self.user_kwargs = dict(user_kwargs or {})
        self.max_turns = max_turns
        self.num_candidates = candidates
        self.catalog_name = catalog_name
        self.split = split
        self.agent_name = agent_name
        self._rng = stream(seed, "play_dialogs")
        self._dialogs: dict[str, PlayDialog] = {}
        self._host_lock = threading.Lock()
        self._agent_lock = threading.Lock()  # one agent, its state reset per dialog turn

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this host can play."""
        return MODES if self.agent is not None else ("agent",)

    def get(self, dialog: str) -> PlayDialog:
        """The dialog of an id, or :class:`PlayError`."""
        with self._host_lock:
            found = self._dialogs.get(dialog)
        if found is None:
            raise PlayError(f"no dialog {dialog!r} on this server (it may have been started before a restart)")
        return found

    # ------------------------------------------------------------------ start
    def start(self, mode: str) -> PlayDialog:
        """Start a dialog: draw its target and first image, log its start (and, in ``"agent"`` mode, turn 0)."""
        if mode not in self.modes:
            raise PlayError(
                f"mode {mode!r} is not available here; choose one of {list(self.modes)}"
                + ("" if self.agent is not None else " (start the server with --agent for 'shopper' mode)")
            )
        with self._host_lock:
            target = int(self._rng.integers(self.catalog.num_images))
            initial = int(self._rng.integers(self.catalog.num_images - 1))
            initial += initial >= target
            name = secrets.token_hex(8)
            episode_seed = int(self._rng.integers(2**31))
        dialog = PlayDialog(dialog=name, mode=mode, target=target, shown=[initial], seed=episode_seed)
        if mode == "shopper":
            user: UserSimulator | str = QueuedFeedback(self.vocabulary)
            kwargs: dict[str, Any] = {"vocabulary": self.vocabulary}
        else:
            user, kwargs = self.user, {"user_kwargs": self.user_kwargs, "vocabulary": self.vocabulary}
        dialog.env = DialogRetrievalVectorEnv(
            num_envs=1,
            catalog=self.full_catalog,
            split=self.split,
            user=user,
            max_turns=self.max_turns,
            autoreset_mode=AutoresetMode.DISABLED,
            **kwargs,
        )
        self.log.append(
            "start",
            name,
            mode=mode,
            target=target,
            target_id=str(self.catalog.ids[target]),
            catalog=self.catalog_name,
            split=self.split,
            agent=self.agent_name if mode == "shopper" else None,
            max_turns=self.max_turns,
            vocabulary_size=len(dialog.env.vocabulary),
            user=None if mode == "shopper" else self.user,
        )
        if mode == "agent":
            self._reset(dialog, text=None)
            self._log_turn(dialog, source="simulator")
            dialog.candidates = self._candidates(dialog)
        with self._host_lock:
            self._dialogs[name] = dialog
        return dialog

    # ------------------------------------------------------------------ shopper mode
    def submit_feedback(self, dialog: PlayDialog, turn: int, text: str) -> PlayDialog:
        """The person's feedback on the image shown at ``turn``; the agent then shows the next image.

        Raises:
            PlayError: the dialog is over, ``turn`` is not the current one (a double submit or an
                old tab), or the feedback is empty, too long, or has no word at all.
        """
        if dialog.mode != "shopper":
            raise PlayError("this dialog's shopper is the simulator; pick an image instead")
        text = " ".join(str(text).split())
        with dialog.lock:
            self._check_turn(dialog, turn)
            if not text:
                raise PlayError("please type how your shoe differs from the one shown (for example 'is black')")
            if len(text) > MAX_FEEDBACK_CHARACTERS:
                raise PlayError(f"that is {len(text)} characters; please say it in at most {MAX_FEEDBACK_CHARACTERS}")
            if not tokenize(text):
                raise PlayError("the feedback has no words the agent could read; please use words")
            if dialog.turn == 0:
                self._reset(dialog, text=text)
            else:
                self._step(dialog, dialog.shown[-1], text=text)
            self._log_turn(dialog, source="human")
            if dialog.over:
                return dialog
            with self._agent_lock:
                self.agent.reset(self.catalog, 1)  # the agent replays the dialog so far: its state is its own
                action = self._agent_action(dialog)
            dialog.shown.append(action)
            dialog.turn += 1
            if action == dialog.target:  # the agent found it: nothing left to describe
                self._step(dialog, action, text="")
                self._log_turn(dialog, source="found")
        return dialog

    def _agent_action(self, dialog: PlayDialog) -> int:
        """The agent's next image after replaying the dialog's observations so far (one dialog, batch 1)."""
        action = None
        for observations, infos in dialog.history:
            action = int(np.asarray(self.agent.act(observations, infos)).reshape(-1)[0])
        assert action is not None
        return action

    # ------------------------------------------------------------------ agent mode
    def pick(self, dialog: PlayDialog, turn: int, image: int) -> PlayDialog:
        """The person, as the retrieval system, shows image ``image``; the simulated shopper answers.

        Raises:
            PlayError: the dialog is over, a stale ``turn``, or an image index outside the catalogue.
        """
        if dialog.mode != "agent":
            raise PlayError("in this dialog you are the shopper; type your feedback instead")
        with dialog.lock:
            self._check_turn(dialog, turn)
            if not 0 <= image < self.catalog.num_images:
                raise PlayError(f"there is no image {image}; pick one of the images on the page")
            dialog.shown.append(image)
            dialog.turn += 1
            self._step(dialog, image, text=None)
            self._log_turn(dialog, source="simulator")
            dialog.candidates = [] if dialog.over else self._candidates(dialog)
        return dialog

    def more_candidates(self, dialog: PlayDialog, turn: int) -> PlayDialog:
        """Another page of candidates for the same turn (``"agent"`` mode)."""
        with dialog.lock:
            self._check_turn(dialog, turn)
            dialog.candidates = self._candidates(dialog)
        return dialog

    def _candidates(self, dialog: PlayDialog) -> list[int]:
        dialog.pages += 1
        rng = stream(dialog.seed, "play_candidates", dialog.turn, dialog.pages)
        unseen = np.setdiff1d(np.arange(self.catalog.num_images), np.asarray(dialog.shown))
        return sorted(int(i) for i in rng.choice(unseen, size=min(self.num_candidates, unseen.size), replace=False))

    # ------------------------------------------------------------------ shared
    def give_up(self, dialog: PlayDialog, turn: int) -> PlayDialog:
        """End the dialog before its last turn (logged as ``"gave up"``)."""
        with dialog.lock:
            self._check_turn(dialog, turn)
            self._end(dialog, found=False, reason="gave up")
        return dialog

    def _check_turn(self, dialog: PlayDialog, turn: int) -> None:
        if dialog.over:
            raise PlayError("this dialog is over; start a new one")
        if turn != dialog.turn:
            raise PlayError(
                f"this page is out of date: the dialog is at turn {dialog.turn} (submitted twice, or played in "
                "another tab); reload the page"
            )

    def _reset(self, dialog: PlayDialog, text: str | None) -> None:
        env = dialog.env
        if text is not None:
            env.user.queue = [text]
        options = {"target": np.array([dialog.target]), "initial": np.array([dialog.shown[0]])}
        dialog.observations, dialog.infos = env.reset(seed=dialog.seed, options=options)
        dialog.history = [(dialog.observations, dialog.infos)]
        self._record(dialog, text)

    def _step(self, dialog: PlayDialog, image: int, text: str | None) -> None:
        env = dialog.env
        if text is not None:
            env.user.queue = [text]
        observations, _, terminated, truncated, infos = env.step(np.array([image]))
        dialog.observations, dialog.infos = observations, infos
        dialog.history.append((observations, infos))
        self._record(dialog, text)
        if terminated[0] or truncated[0]:
            found = bool(infos["is_success"][0])
            dialog.pending_end = (found, "found" if found else "out of turns")  # logged after the turn

    def _record(self, dialog: PlayDialog, text: str | None) -> None:
        infos = dialog.infos
        dialog.ranks.append(int(infos["target_rank"][0]))
        feedback = str(infos["feedback_text"][0])
        dialog.feedback.append(feedback)
        vocabulary = dialog.env.vocabulary
        dialog.unknown_words.append(sorted({word for word in tokenize(feedback) if word not in vocabulary}))
        words = tokenize(feedback)
        dialog.message = (
            f"only the first {MAX_FEEDBACK_TOKENS} words are read" if len(words) > MAX_FEEDBACK_TOKENS else ""
        )

    def _log_turn(self, dialog: PlayDialog, source: str) -> None:
        turn = len(dialog.ranks) - 1
        self.log.append(
            "turn",
            dialog.dialog,
            turn=turn,
            shown=dialog.shown[turn],
            shown_id=str(self.catalog.ids[dialog.shown[turn]]),
            rank=dialog.ranks[turn],
            percentile=round(float(dialog.infos["rank_percentile"][0]), 6),
            feedback=dialog.feedback[turn],
            unknown_words=dialog.unknown_words[turn],
            source=source,
        )
        if dialog.pending_end is not None:
            found, reason = dialog.pending_end
            dialog.pending_end = None
            self._end(dialog, found, reason)

    def _end(self, dialog: PlayDialog, found: bool, reason: str) -> None:
        dialog.over, dialog.found, dialog.reason = True, found, reason
        dialog.candidates = []
        self.log.append("end", dialog.dialog, found=found, reason=reason, turns=len(dialog.ranks) - 1)
