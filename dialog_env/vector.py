"""``DialogRetrievalVectorEnv``: ``B`` dialogs stepped together, one matrix product per step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dialog_env.dynamics import DialogModel, RewardFunction, uniform_except
from dialog_env.env import (
    CatalogSpec,
    ModelParts,
    build_dialog,
    dialog_observation_space,
    transcript_line,
)
from dialog_env.errors import ConfigurationError, InvalidActionError, ResetNeeded
from dialog_env.render.frame import PictureSource, dialog_frame
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary
from dialog_env.tolerance import ToleranceState
from dialog_env.users.base import UserSimulator

__all__ = ["DialogRetrievalVectorEnv"]

_SeedSpec = int | Sequence[int | None] | None
_AUTORESET_VALUES = [mode.value for mode in AutoresetMode]


def _autoreset_mode(value: Any) -> AutoresetMode:
    """The :class:`AutoresetMode` that ``value`` (the enum or its string value) names."""
    if isinstance(value, AutoresetMode):
        return value
    if isinstance(value, str) and value in _AUTORESET_VALUES:
        return AutoresetMode(value)
    raise ConfigurationError(
        f"unknown autoreset_mode {value!r}; choose a gymnasium.vector.AutoresetMode or one of its values "
        f"{_AUTORESET_VALUES}"
    )


class DialogRetrievalVectorEnv(ModelParts, VectorEnv):
    """``num_envs`` dialogs of :class:`~dialog_env.env.DialogRetrievalEnv`, batched natively.

    ## Description

    The same task as the single environment (read its docstring for the dialog, the rank, the
    rewards and the episode end), for ``B = num_envs`` independent dialogs at once. A step ranks
    the targets of all ``B`` dialogs with one matrix product over the catalogue
    (:meth:`Ranker.target_ranks <dialog_env.ranking.Ranker.target_ranks>`) and asks the user
    simulator for ``B`` captions in one call; nothing loops over catalogue images in Python.
    ``gym.make_vec("DialogRetrieval-v0", num_envs=B)`` builds this class (it is the registered
    ``vector_entry_point``); ``vectorization_mode="sync"`` or ``"async"`` gives Gymnasium's
    generic vector environments over single environments instead.

    "One product" means one ``(B, D) @ (D, N)`` float32 GEMM; only when its output would exceed the
    ranker's memory bound (256 MiB by default, e.g. ``B = 1,024, N = 100,000``) is it split into
    a few products over chunks of the catalogue. Steps at ``B = 128, N = 10,000`` take about
    1.5x the bare product (``benchmarks/results/env_speed.md``).

    ## Equivalence with single environments

    Per dialog, everything matches ``B`` single environments: after ``reset(seed=s)``, dialog
    ``i`` draws from its own generator ``gymnasium.utils.seeding.np_random(s + i)``, exactly as a
    single environment after ``reset(seed=s + i)`` (and as ``SyncVectorEnv`` seeds its
    sub-environments), in the same order (target, first image, then the user's draws). With the
    same actions, every observation, reward, termination, truncation and info is identical to
    ``gym.make_vec(..., vectorization_mode="sync")``, autoresets included (``tests/test_vector.py``).

    ## Autoreset

    ``autoreset_mode`` (constructor argument, also ``envs.autoreset_mode`` and
    ``envs.metadata["autoreset_mode"]``) chooses what happens when dialog ``i`` terminates or is
    truncated, with Gymnasium's three modes; in each, every dialog equals dialog ``i`` of
    ``SyncVectorEnv`` in the same mode, step for step (``tests/test_vector.py``,
    ``tests/test_properties.py``). A new dialog draws its target and first image from that
    dialog's generator, as a single environment's ``reset()`` without a seed does.

    - ``AutoresetMode.NEXT_STEP`` (``"NextStep"``, the default): the next ``step`` ignores
      ``actions[i]`` and resets that dialog instead, returning its first observation with
      reward 0.0 and ``terminated = truncated = False``. The other dialogs step normally.
    - ``AutoresetMode.SAME_STEP`` (``"SameStep"``): the step that ends dialog ``i`` also resets
      it. It returns the ending reward, ``terminated`` and ``truncated``, but the new dialog's
      first observation and info; the last observation and info of the ended dialog are in
      ``infos["final_obs"]`` (a ``(B,)`` object array: dialog ``i``'s observation dict, ``None``
      for the others) and ``infos["final_info"]`` (a dict of ``(B,)`` arrays with their
      ``"_key"`` masks, zero/None for the other dialogs), masked by ``infos["_final_obs"]`` and
      ``infos["_final_info"]``, exactly as ``SyncVectorEnv`` builds them. Those keys are present
      only in steps where some dialog ended. Such steps rank twice: the ``B`` shown images, then
      the new first images of the ended dialogs.
    - ``AutoresetMode.DISABLED`` (``"Disabled"``): nothing is reset automatically; call
      ``reset(options={"reset_mask": mask})`` with ``mask`` covering the ended dialogs before
      the next ``step``, which otherwise raises :class:`~dialog_env.errors.ResetNeeded` (where
      ``SyncVectorEnv`` fails an ``assert``) and changes nothing.

    ``reset(options={"reset_mask": mask})`` resets only the dialogs where ``mask`` is True, in
    every mode, as in Gymnasium's vector environments. Gymnasium 1.4's ``gym.make_vec`` refuses
    ``vector_kwargs`` for a ``vector_entry_point``; pass the mode with the other arguments:
    ``gym.make_vec("DialogRetrieval-v0", num_envs=B, autoreset_mode="SameStep")``
    (``vector_kwargs={"autoreset_mode": ...}`` is for ``vectorization_mode="sync"``).

    TorchRL's ``GymWrapper`` takes ``SAME_STEP`` (with ``feedback_text_in_info=False``: it cannot
    read string infos) and ``DISABLED`` (it then resets with ``reset_mask`` and reads no infos),
    and refuses ``NEXT_STEP`` for every environment (``tests/test_clients.py``).

    ## Spaces

    ``single_action_space`` is ``Discrete(N)``; ``action_space`` is ``MultiDiscrete([N] * B)``:
    ``actions`` is a ``(B,)`` integer array of image indices. ``observation_space`` batches the
    single environment's ``Dict`` per key:

    | key | shape | dtype | meaning |
    | --- | --- | --- | --- |
    | ``feedback`` | ``(B, 16)`` | int64 | token ids of each dialog's latest feedback, padded with 0 |
    | ``image`` | ``(B, D)`` | float32 | features of the image each feedback is about |
    | ``turn`` | ``(B, 1)`` | int64 | actions taken so far in each dialog (0 after a reset) |

    ``step`` returns ``rewards (B,) float64``, ``terminations (B,) bool``, ``truncations (B,) bool``.

    ## Action Mask

    ``envs.action_masks()`` returns a ``(B, N) bool`` array whose row ``i`` is dialog ``i``'s
    no-repeat mask, equal to ``DialogRetrievalEnv.action_masks()`` of the matching single
    environment: True for the images not yet shown in the dialog's current episode (its first
    image counts as shown). The environment keeps only each dialog's ``max_turns + 1`` shown
    indices; the mask is a fresh array built per call (``B N`` bytes: 2.5 MB at ``B = 256,
    N = 10,000``). A new dialog starts a new mask, whenever it starts: ``reset`` (with or without
    ``reset_mask``), a ``NEXT_STEP`` autoreset (after the step that resets it) and a
    ``SAME_STEP`` autoreset (right after the step that ended the old dialog, so the mask belongs
    to the observation that step returns). A dialog that ended and waits for its ``NEXT_STEP`` or
    ``DISABLED`` reset keeps the ended dialog's mask. Before the first ``reset`` every action is
    allowed. The mask is advice: ``step`` accepts masked actions.

    ## Info

    Gymnasium's vector convention (what ``SyncVectorEnv`` builds from single-env infos): a dict
    of ``(B,)`` arrays, each key ``k`` paired with a bool mask ``"_k"`` saying which dialogs have
    it (all of them, except after a partial ``reset`` with ``reset_mask``, where only the reset
    dialogs have entries and the others hold 0/None): ``target_rank`` int64, ``rank_percentile`` float64, ``is_success``
    bool, ``feedback_text`` object (str; absent with ``feedback_text_in_info=False``),
    ``shown_index`` int64, ``turn`` int64, ``target_index`` int64 only with
    ``expose_target=True``, ``shopper_left`` bool only with ``patience`` and ``is_accepted`` bool
    only with ``accept_rank`` (see :mod:`dialog_env.tolerance`). After an autoreset the entries of a
    reset dialog are its reset info; in ``SAME_STEP`` mode the ended dialog's last info is in
    ``infos["final_info"]``.

    ## Arguments

    ```python
    import gymnasium as gym
    envs = gym.make_vec("dialog_env:DialogRetrieval-v0", num_envs=128, split="test")
    observations, infos = envs.reset(seed=0)
    observations, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())
    ```

    ``num_envs`` (default 1), ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``; the enum
    or its value ``"NextStep"``, ``"SameStep"`` or ``"Disabled"``, see "Autoreset"), plus every
    argument of :class:`DialogRetrievalEnv` (``catalog``, ``split``, ``user``, ``user_kwargs``,
    ``max_turns``, ``reward_mode``, ``expose_target``, ``max_feedback_tokens``, ``render_mode``,
    ``feedback_text_in_info``, ``patience``, ``accept_rank``, ``vocabulary``, ``rank_table``), with the
    same meaning and validation. With ``rank_table=True`` a step looks the ``B`` ranks up in the
    split's shared table instead of computing the product (same numbers; see
    ``benchmarks/results/env_speed.md`` for the speed-up).
    ``model`` (the :class:`~dialog_env.dynamics.DialogModel` every dialog of the batch plays
    through, the planning interface), ``catalog``, ``user``, ``ranker`` and ``vocabulary`` are
    public as on the single environment.

    ## Rendering

    ``render()`` returns a tuple with each dialog's transcript (``"ansi"``) or each dialog's
    ``(H, W, 3) uint8`` frame (``"rgb_array"``: pictures and transcript as the single env draws
    them, all of one shape, so they stack), or
    prints each dialog's newest line (``"human"``), like ``SyncVectorEnv`` over single
    environments.

    ## Version History

    - v0: initial version.
    """

    metadata = {
        "render_modes": ["ansi", "human", "rgb_array"],
        "render_fps": 1,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        catalog: CatalogSpec = None,
        split: str = "train",
        user: str | UserSimulator = "rule",
        user_kwargs: Mapping[str, Any] | None = None,
        max_turns: int = 10,
        reward_mode: str | RewardFunction = "percentile",
        expose_target: bool = False,
        max_feedback_tokens: int = MAX_FEEDBACK_TOKENS,
        render_mode: str | None = None,
        feedback_text_in_info: bool = True,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        patience: int | None = None,
        accept_rank: int | None = None,
        vocabulary: Vocabulary | Sequence[str] | None = None,
        rank_table: bool | str = False,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigurationError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        # An instance copy: the class dict keeps the default mode.
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        # One validation path and one turn model for both environments; every dialog of the
        # batch shares the model (catalogue split, user, ranker, vocabulary).
        self.model: DialogModel
        self.model, settings = build_dialog(
            catalog=catalog,
            split=split,
            user=user,
            user_kwargs=user_kwargs,
            max_turns=max_turns,
            reward_mode=reward_mode,
            expose_target=expose_target,
            max_feedback_tokens=max_feedback_tokens,
            render_mode=render_mode,
            feedback_text_in_info=feedback_text_in_info,
            patience=patience,
            accept_rank=accept_rank,
            vocabulary=vocabulary,
            rank_table=rank_table,
        )
        self.num_envs = int(num_envs)
        self.split = settings.split
        self.max_turns = settings.max_turns
        self.reward_mode = settings.reward_mode
        self.expose_target = settings.expose_target
        self.feedback_text_in_info = settings.feedback_text_in_info
        self.max_feedback_tokens = settings.max_feedback_tokens
        self.tolerance = settings.tolerance
        self._tolerance_state = ToleranceState(self.tolerance, self.num_envs)
        self.render_mode = render_mode

        self.single_action_space = spaces.Discrete(self.catalog.num_images)
        self.single_observation_space = dialog_observation_space(self.model, self.max_turns)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        batch = self.num_envs
        self._rngs: list[np.random.Generator] | None = None
        self._targets = np.zeros(batch, dtype=np.int64)
        self._shown = np.zeros(batch, dtype=np.int64)
        self._initials = np.zeros(batch, dtype=np.int64)
        self._turns = np.zeros(batch, dtype=np.int64)
        self._ranks = np.zeros(batch, dtype=np.int64)
        self._percentiles = np.zeros(batch, dtype=np.float64)
        self._feedback_texts = np.full(batch, "", dtype=object)
        self._feedback_ids = np.zeros((batch, self.max_feedback_tokens), dtype=np.int64)
        self._needs_reset = np.zeros(batch, dtype=np.bool_)
        self._has_reset = False
        # Column t: the image shown at turn t of each dialog's current episode (see action_masks).
        self._shown_history = np.zeros((batch, self.max_turns + 1), dtype=np.int64)
        self._transcripts: list[list[str]] = [[] for _ in range(batch)]
        self._pictures: PictureSource | None = None  # drawn on the first rgb_array render

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: _SeedSpec = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start new dialogs (all, or those of ``options["reset_mask"]``).

        Args:
            seed: ``None`` (continue each dialog's generator; fresh entropy the first time), an
                int ``s`` (dialog ``i`` gets ``seeding.np_random(s + i)``) or ``B`` ints/``None``.
            options: optional ``"target"`` and ``"initial"``, ``(B,)`` integer arrays of image
                indices that fix each dialog's target and first image (``initial != target``);
                optional ``"reset_mask"``, a ``(B,)`` bool array selecting the dialogs to reset.

        Returns:
            ``(observations, infos)`` for all ``B`` dialogs (see the class docstring).
        """
        batch = self.num_envs
        options = dict(options or {})
        unknown = set(options) - {"target", "initial", "reset_mask"}
        if unknown:
            raise ConfigurationError(
                f"unknown reset option(s) {sorted(unknown)}; supported: 'target', 'initial', 'reset_mask'"
            )
        mask = self._reset_mask(options.get("reset_mask"))
        seeds = self._seeds(seed)
        targets = self._option_indices(options.get("target"), "target")
        initials = self._option_indices(options.get("initial"), "initial")
        if targets is not None and initials is not None and np.any((targets == initials) & mask):
            clash = int(np.flatnonzero((targets == initials) & mask)[0])
            raise ConfigurationError(
                f"reset options: initial image {int(initials[clash])} of dialog {clash} must differ from its target"
            )
        if self._rngs is None:
            if not mask.all():
                raise ConfigurationError(
                    "reset_mask given before the first full reset(); call reset() without it first"
                )
            self._rngs = [seeding.np_random(seeds[i])[0] for i in range(batch)]
        else:
            for i in np.flatnonzero(mask):
                if seeds[i] is not None:
                    self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._start(mask, targets, initials)
        self._has_reset = True
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), self._get_info(None if mask.all() else mask)

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Show one image in each dialog (in ``NEXT_STEP`` mode, autoreset those that ended last step).

        Args:
            actions: ``(B,)`` integer image indices in ``0..N-1``.

        Returns:
            ``(observations, rewards (B,) float64, terminations (B,) bool, truncations (B,) bool,
            infos)``; in ``SAME_STEP`` mode ``infos`` also holds ``final_obs``/``final_info``
            when a dialog ended (see "Autoreset").

        Raises:
            InvalidActionError: ``actions`` of the wrong shape or dtype, or out of range.
            ResetNeeded: ``step`` before the first ``reset``, or, in ``DISABLED`` mode, while a
                dialog that ended has not been reset.
        """
        if not self._has_reset:
            raise ResetNeeded("step() called before the first reset(); call reset() first")
        actions = self._check_actions(actions)
        if self.autoreset_mode == AutoresetMode.DISABLED and self._needs_reset.any():
            ended = np.flatnonzero(self._needs_reset).tolist()
            raise ResetNeeded(
                f"step() called while dialog(s) {ended} have ended and autoreset_mode is "
                f"{self.autoreset_mode.value!r}; call reset(options={{'reset_mask': mask}}) with mask True "
                f"for them first"
            )
        # Only NEXT_STEP leaves dialogs pending a reset here: SAME_STEP resets them in the step
        # that ends them, DISABLED refuses to step them (above).
        resetting = self._needs_reset
        stepping = ~resetting
        previous = self._percentiles

        if resetting.any():
            self._draw_starts(resetting, None, None)
        shown = np.where(stepping, actions, self._shown)
        self._turns = np.where(stepping, self._turns + 1, 0)
        self._show(shown)

        found = stepping & (shown == self._targets)
        terminated = found
        if self.tolerance.enabled:
            self._tolerance_state.start(resetting, self._ranks)
            terminated = found | self._tolerance_state.judge(stepping, self._ranks, found)
            if self.render_mode is not None:
                for i, note in enumerate(self._tolerance_state.transcript_notes()):
                    if note and stepping[i]:
                        self._transcripts[i][-1] += note
        truncated = stepping & ~terminated & (self._turns >= self.max_turns)
        rewards = self.model.reward(self._percentiles, previous, found)
        rewards[resetting] = 0.0
        ended = terminated | truncated
        self._needs_reset = ended
        if self.render_mode == "human":
            self.render()
        if self.autoreset_mode != AutoresetMode.SAME_STEP or not ended.any():
            return self._get_obs(), rewards, terminated, truncated, self._get_info()

        # SAME_STEP: keep the ended dialogs' last observation and info, start them again.
        final_observations, final_info = self._get_obs(), self._get_info(ended)
        self._start(ended, None, None)
        if self.render_mode == "human":
            self._print_newest(ended)
        infos = self._get_info()
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(ended):
            final_obs[i] = {key: value[i].copy() for key, value in final_observations.items()}
        infos["final_obs"], infos["_final_obs"] = final_obs, ended.copy()
        infos["final_info"], infos["_final_info"] = final_info, ended.copy()
        return self._get_obs(), rewards, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """Each dialog's no-repeat action mask (see "Action Mask").

        Returns:
            ``(B, N) bool``: row ``i`` True for the images not yet shown in dialog ``i``'s current
            episode (all True before the first ``reset``); a fresh array.
        """
        masks = np.ones((self.num_envs, self.catalog.num_images), dtype=np.bool_)
        if self._has_reset:
            shown = np.arange(self.max_turns + 1)[None, :] <= self._turns[:, None]  # (B, T + 1)
            dialogs = np.broadcast_to(np.arange(self.num_envs)[:, None], shown.shape)
            masks[dialogs[shown], self._shown_history[shown]] = False
        return masks

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """Each dialog's transcript: strings (``"ansi"``), printed (``"human"``) or frames (``"rgb_array"``).

        ``"ansi"``: each dialog's transcript; ``"rgb_array"``: each dialog's ``(H, W, 3) uint8``
        frame (its pictures above its transcript, as the single env's); ``"human"``: print each
        dialog's newest line.
        """
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; pass render_mode='ansi', 'human' or 'rgb_array' to gym.make_vec"
            )
            return None
        if self.render_mode == "ansi":
            return tuple("\n".join(lines) + "\n" for lines in self._transcripts)
        if self.render_mode == "rgb_array":
            if self._pictures is None:
                self._pictures = PictureSource(self.catalog)
            return tuple(
                dialog_frame(
                    self._pictures, target=int(self._targets[i]) if self._has_reset else None,
                    shown_history=self._shown_history[i, : int(self._turns[i]) + 1].tolist() if self._has_reset else [],
                    rank=int(self._ranks[i]), percentile=float(self._percentiles[i]),
                    feedback=str(self._feedback_texts[i]), transcript=self._transcripts[i], split=self.split,
                    turn=int(self._turns[i]), max_turns=self.max_turns,
                )  # fmt: skip
                for i in range(self.num_envs)
            )
        self._print_newest(np.ones(self.num_envs, dtype=np.bool_))
        return None

    def close_extras(self, **kwargs: Any) -> None:
        """Drop the transcripts (nothing else holds resources)."""
        self._transcripts = [[] for _ in range(self.num_envs)]

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Each dialog's generator (as ``SyncVectorEnv.np_random`` returns its sub-envs')."""
        if self._rngs is None:
            self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        return tuple(self._rngs)

    # ------------------------------------------------------------------ helpers
    def _print_newest(self, which: np.ndarray) -> None:
        """``"human"`` rendering: print the newest transcript line of the dialogs in ``which``."""
        for i in np.flatnonzero(which):
            if self._transcripts[i]:
                print(f"dialog {i}: {self._transcripts[i][-1]}")

    def _start(self, mask: np.ndarray, targets: np.ndarray | None, initials: np.ndarray | None) -> None:
        """Begin new dialogs where ``mask`` is True (the others keep their state)."""
        self._draw_starts(mask, targets, initials)
        self._turns = np.where(mask, 0, self._turns)
        self._needs_reset = self._needs_reset & ~mask
        # Only the reset dialogs are ranked and described, so the others' generators are not
        # advanced (and a SAME_STEP autoreset ranks only the dialogs that ended).
        self._show(np.where(mask, self._initials, self._shown), only=None if mask.all() else mask)
        self._tolerance_state.start(mask, self._ranks)

    def _draw_starts(self, mask: np.ndarray, targets: np.ndarray | None, initials: np.ndarray | None) -> None:
        """Targets and first images of the dialogs in ``mask``, drawn as the single env does."""
        assert self._rngs is not None
        num_images = self.catalog.num_images
        self._initials = self._shown.copy()
        for i in np.flatnonzero(mask):
            rng = self._rngs[i]
            target = int(targets[i]) if targets is not None else int(rng.integers(num_images))
            if initials is not None:
                initial = int(initials[i])
                if initial == target:
                    raise ConfigurationError(
                        f"reset options: initial image {initial} of dialog {i} must differ from its target"
                    )
            else:
                initial = int(uniform_except(rng, num_images, target))
            self._targets[i] = target
            self._initials[i] = initial
            self._transcripts[i] = []
        self._shown = np.where(mask, self._initials, self._shown)

    def _show(self, shown: np.ndarray, only: np.ndarray | None = None) -> None:
        """Rank the targets w.r.t. ``shown`` (one product for the batch) and get the captions.

        Args:
            shown: ``(B,) int64`` image shown in each dialog.
            only: optional ``(B,) bool``: update only these dialogs (a partial reset).
        """
        which = np.arange(self.num_envs) if only is None else np.flatnonzero(only)
        assert self._rngs is not None
        # self._turns is already the turn of this showing (0 for a new dialog), at most max_turns.
        self._shown_history[which, self._turns[which]] = shown[which]
        # Only the dialogs in ``which`` play the turn (their generators alone advance); the ranks
        # are exact, so ranking a subset gives the same numbers as ranking all B.
        if only is None:
            response = self.model.respond(self._targets, shown, self._rngs)
        else:
            response = self.model.respond(self._targets[which], shown[which], [self._rngs[i] for i in which])
        if only is None:
            self._shown = shown
            self._ranks = response.ranks
            self._percentiles = response.percentiles
            self._feedback_texts = np.empty(self.num_envs, dtype=object)
            self._feedback_texts[:] = response.captions
            self._feedback_ids = response.tokens
        else:
            self._shown = np.where(only, shown, self._shown)
            self._ranks = self._ranks.copy()
            self._ranks[which] = response.ranks
            self._percentiles = self._percentiles.copy()
            self._percentiles[which] = response.percentiles
            self._feedback_texts = self._feedback_texts.copy()
            self._feedback_texts[which] = response.captions
            self._feedback_ids = self._feedback_ids.copy()
            self._feedback_ids[which] = response.tokens
        if self.render_mode is not None:
            for row, i in enumerate(which):
                self._transcripts[i].append(
                    transcript_line(
                        int(self._turns[i]), self.catalog.ids[shown[i]], int(shown[i]), int(response.ranks[row]),
                        float(response.percentiles[row]), response.captions[row], bool(shown[i] == self._targets[i]),
                    )
                )

    def _get_obs(self) -> dict[str, np.ndarray]:
        return {
            "feedback": self._feedback_ids.copy(),
            "image": self.catalog.features[self._shown],  # fancy indexing: a fresh array
            "turn": self._turns[:, None].copy(),
        }

    def _get_info(self, mask: np.ndarray | None = None) -> dict[str, Any]:
        """Gymnasium-style vector info of every dialog, or only of those in ``mask``.

        With ``mask`` (a partial reset) only those dialogs' entries are set, the others are
        zero/None with ``"_key"`` False, as ``SyncVectorEnv`` does.
        """
        batch = self.num_envs
        values: dict[str, np.ndarray] = {
            "target_rank": self._ranks.copy(),
            "rank_percentile": self._percentiles.copy(),
            "is_success": self._shown == self._targets,
            "feedback_text": self._feedback_texts.copy(),
            "shown_index": self._shown.copy(),
            "turn": self._turns.copy(),
        }
        if not self.feedback_text_in_info:
            del values["feedback_text"]
        if self.expose_target:
            values["target_index"] = self._targets.copy()
        values.update(self._tolerance_state.info_values())
        info: dict[str, Any] = {}
        present = np.ones(batch, dtype=np.bool_) if mask is None else mask.copy()
        for key, value in values.items():
            if mask is not None:
                value[~mask] = None if value.dtype == object else 0
            info[key] = value
            info[f"_{key}"] = present.copy()
        return info

    def _check_actions(self, actions: Any) -> np.ndarray:
        num_images = self.catalog.num_images
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise InvalidActionError(
                f"actions must be a ({self.num_envs},) array of image indices in 0..{num_images - 1}, "
                f"got shape {array.shape}"
            )
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise InvalidActionError(
                f"actions must be integer image indices in 0..{num_images - 1}, got dtype {array.dtype}"
            )
        if array.size and (array.min() < 0 or array.max() >= num_images):
            bad = int(np.flatnonzero((array < 0) | (array >= num_images))[0])
            raise InvalidActionError(
                f"action {int(array[bad])} of dialog {bad} is out of range: valid image indices are 0..{num_images - 1}"
            )
        return array.astype(np.int64, copy=False)

    def _seeds(self, seed: _SeedSpec) -> list[int | None]:
        batch = self.num_envs
        if seed is None:
            return [None] * batch
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(batch)]
        if isinstance(seed, Sequence) and not isinstance(seed, str) and len(seed) == batch:
            return [None if s is None else int(s) for s in seed]
        raise ConfigurationError(f"seed must be None, an int or a list of {batch} ints/None, got {seed!r}")

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=np.bool_)
        array = np.asarray(mask)
        if array.shape != (self.num_envs,) or array.dtype != np.bool_:
            raise ConfigurationError(
                f"reset option 'reset_mask' must be a ({self.num_envs},) bool array, got dtype {array.dtype}, "
                f"shape {array.shape}"
            )
        if not array.any():
            raise ConfigurationError("reset option 'reset_mask' selects no dialog; set at least one entry True")
        return array

    def _option_indices(self, value: Any, name: str) -> np.ndarray | None:
        if value is None:
            return None
        num_images = self.catalog.num_images
        array = np.asarray(value)
        if array.shape != (self.num_envs,) or array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise ConfigurationError(
                f"reset option {name!r} must be a ({self.num_envs},) integer array of image indices, "
                f"got dtype {array.dtype}, shape {array.shape}"
            )
        if array.min() < 0 or array.max() >= num_images:
            raise ConfigurationError(
                f"reset option {name!r}: image indices must be in 0..{num_images - 1}, got {array.tolist()}"
            )
        return array.astype(np.int64)
