"""``DialogRetrieval-v0``: dialog-based interactive image retrieval as a Gymnasium environment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dialog_env.catalog import Catalog
from dialog_env.dynamics import REWARD_FUNCTIONS, DialogModel, RewardFunction, resolve_reward, uniform_except
from dialog_env.errors import CatalogError, ConfigurationError, InvalidActionError, ResetNeeded
from dialog_env.rank_table import check_rank_table_option, shared_rank_table, wants_rank_table
from dialog_env.ranking import Ranker
from dialog_env.render.frame import PictureSource, dialog_frame
from dialog_env.render.text import transcript_frame
from dialog_env.synthetic import default_catalog, make_synthetic_shoes
from dialog_env.text import MAX_FEEDBACK_TOKENS, PAD_TOKEN, UNK_TOKEN, Vocabulary
from dialog_env.tolerance import ShopperTolerance, ToleranceState
from dialog_env.users.base import UserSimulator, make_user

__all__ = [
    "DialogRetrievalEnv",
    "DialogSettings",
    "ModelParts",
    "build_dialog",
    "dialog_observation_space",
    "make_catalog",
    "REWARD_MODES",
    "transcript_frame",
    "transcript_line",
    "validate_action",
]

#: Named reward modes: ``percentile`` (default), ``improvement``, ``success`` (see :mod:`dialog_env.dynamics`).
REWARD_MODES = tuple(REWARD_FUNCTIONS)

#: Render modes of both environments.
RENDER_MODES = ("ansi", "human", "rgb_array")

CatalogSpec = Catalog | str | os.PathLike | Mapping[str, Any] | None


def make_catalog(catalog: CatalogSpec = None) -> Catalog:
    """Resolve the ``catalog`` argument of the environments.

    Args:
        catalog: ``None`` for the default synthetic catalogue; a path to an HDF5 catalogue; a
            mapping of :class:`~dialog_env.synthetic.SyntheticShoesConfig` fields for another
            synthetic catalogue (e.g. ``{"num_train": 500, "num_test": 200, "seed": 1}``); or a
            :class:`Catalog`.

    Raises:
        ConfigurationError: an argument of another type, or unknown synthetic settings.
        CatalogNotFoundError, CatalogFormatError: an unreadable file.
    """
    if catalog is None:
        return default_catalog()
    if isinstance(catalog, Catalog):
        return catalog
    if isinstance(catalog, (str, os.PathLike)):
        return Catalog.load(catalog)
    if isinstance(catalog, Mapping):
        try:
            return make_synthetic_shoes(**catalog)
        except TypeError as error:
            raise ConfigurationError(f"unknown synthetic catalogue settings in {dict(catalog)}: {error}") from error
    raise ConfigurationError(
        f"catalog must be None, a Catalog, a path to an HDF5 catalogue or a mapping of synthetic settings; "
        f"got {type(catalog).__name__}"
    )


def _check_bool(value: Any, name: str, meaning: str) -> None:
    """:class:`ConfigurationError` unless ``value`` is a bool (``1`` or ``"yes"`` are refused, not guessed)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigurationError(
            f"{name} must be a bool (True to {meaning}, False otherwise), got {value!r} of type {type(value).__name__}"
        )


def _user_name(user: Any) -> str:
    return repr(user) if isinstance(user, str) else type(user).__name__


def validate_action(action: Any, num_images: int) -> int:
    """The image index an action names, or :class:`InvalidActionError`.

    Accepts Python and NumPy integers and 0-d (or one-element 1-d) integer arrays.
    """
    value = action
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.ndim > 1:
            raise InvalidActionError(
                f"action must be one image index in 0..{num_images - 1}, got an array of shape {value.shape}"
            )
        value = value.reshape(()).item() if np.issubdtype(value.dtype, np.integer) else value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidActionError(
            f"action must be an integer image index in 0..{num_images - 1}, got {action!r} "
            f"of type {type(action).__name__}"
        )
    index = int(value)
    if not 0 <= index < num_images:
        raise InvalidActionError(f"action {index} is out of range: valid image indices are 0..{num_images - 1}")
    return index


@dataclass(frozen=True)
class DialogSettings:
    """The validated per-dialog settings shared by the single and the vector environment.

    Attributes mirror the constructor arguments of :class:`DialogRetrievalEnv`.
    """

    split: str
    max_turns: int
    reward_mode: str | RewardFunction
    expose_target: bool
    feedback_text_in_info: bool
    max_feedback_tokens: int
    render_mode: str | None
    tolerance: ShopperTolerance


def _vocabulary(vocabulary: Vocabulary | Sequence[str] | None) -> Vocabulary | None:
    """The ``vocabulary`` argument as a :class:`~dialog_env.text.Vocabulary` (``None``: the user's)."""
    if vocabulary is None or isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence):
        raise ConfigurationError(
            f"vocabulary must be None, a Vocabulary or a list of words, got {type(vocabulary).__name__}"
        )
    words = list(vocabulary)
    if words[:2] == [PAD_TOKEN, UNK_TOKEN]:  # Vocabulary.words, reserved tokens included
        words = words[2:]
    return Vocabulary(words)


def build_dialog(
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
    patience: int | None = None,
    accept_rank: int | None = None,
    vocabulary: Vocabulary | Sequence[str] | None = None,
    rank_table: bool | str = False,
) -> tuple[DialogModel, DialogSettings]:
    """Validate the environments' arguments and build their turn model (one path for both).

    The arguments are those of :class:`DialogRetrievalEnv` (its "Arguments" table), with the
    same meaning. With a rank table (``rank_table=True``, or ``"auto"`` on a small enough
    split), the model's ranker reads the split's shared table
    (:func:`~dialog_env.rank_table.shared_rank_table`, built on first use in the process).

    Returns:
        ``(model, settings)``: the :class:`~dialog_env.dynamics.DialogModel` over the split and
        the validated settings.

    Raises:
        ConfigurationError: a bad argument (the first one found, in the order above after the
            bools and ``user_kwargs``).
        CatalogError: a split of fewer than 2 images; also the catalogue's own loading errors.
        UserSimulatorError: a catalogue the user cannot describe.
    """
    _check_bool(expose_target, "expose_target", "add target_index to info")
    _check_bool(feedback_text_in_info, "feedback_text_in_info", "put the caption in info['feedback_text']")
    rank_table = check_rank_table_option(rank_table)
    if user_kwargs is not None and (
        not isinstance(user_kwargs, Mapping) or not all(isinstance(key, str) for key in user_kwargs)
    ):
        raise ConfigurationError(
            f"user_kwargs must be None or a mapping of keyword arguments of user simulator {_user_name(user)} "
            f"(e.g. {{'vague_rate': 0.2}}), got {user_kwargs!r} of type {type(user_kwargs).__name__}"
        )
    if isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
        raise ConfigurationError(f"max_turns must be an integer >= 1, got {max_turns!r}")
    reward_fn = resolve_reward(reward_mode)
    tolerance = ShopperTolerance.validated(patience, accept_rank)
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ConfigurationError(f"unknown render_mode {render_mode!r}; choose one of {list(RENDER_MODES)} or None")
    if (
        isinstance(max_feedback_tokens, bool)
        or not isinstance(max_feedback_tokens, (int, np.integer))
        or max_feedback_tokens < 1
    ):
        raise ConfigurationError(f"max_feedback_tokens must be an integer >= 1, got {max_feedback_tokens!r}")
    full_catalog = make_catalog(catalog)
    if not isinstance(split, str) or split not in full_catalog.splits:
        raise ConfigurationError(
            f"unknown split {split!r} of catalogue {full_catalog.name!r}; available: {sorted(full_catalog.splits)}"
        )
    split_catalog = full_catalog.select(split)
    if split_catalog.num_images < 2:
        raise CatalogError(
            f"split {split!r} of catalogue {full_catalog.name!r} has {split_catalog.num_images} image(s); "
            f"a dialog needs at least 2 (a target and a different first image)"
        )
    simulator = make_user(user, **dict(user_kwargs or {}))
    ranker = Ranker(split_catalog.features, split_catalog.squared_norms)
    if wants_rank_table(rank_table, split_catalog.num_images):
        # Issue 17: index actions rank by lookup; one table per split and process, shared by all envs.
        ranker.attach_rank_table(shared_rank_table(ranker))
    model = DialogModel(
        split_catalog,
        simulator,
        ranker=ranker,
        vocabulary=_vocabulary(vocabulary),
        max_tokens=int(max_feedback_tokens),
        reward_fn=reward_fn,
    )
    settings = DialogSettings(
        split=split,
        max_turns=int(max_turns),
        reward_mode=reward_mode,
        expose_target=bool(expose_target),
        feedback_text_in_info=bool(feedback_text_in_info),
        max_feedback_tokens=int(max_feedback_tokens),
        render_mode=render_mode,
        tolerance=tolerance,
    )
    return model, settings


def dialog_observation_space(model: DialogModel, max_turns: int) -> spaces.Dict:
    """The observation space of one dialog over ``model`` (see :class:`DialogRetrievalEnv`)."""
    features = model.catalog.features
    return spaces.Dict(
        {
            "feedback": spaces.Box(0, len(model.vocabulary) - 1, shape=(model.max_tokens,), dtype=np.int64),
            "image": spaces.Box(
                float(features.min()), float(features.max()), shape=(model.catalog.dim,), dtype=np.float32
            ),
            "turn": spaces.Box(0, max_turns, shape=(1,), dtype=np.int64),
        }
    )


def transcript_line(
    turn: int, image_id: str, shown: int, rank: int, percentile: float, caption: str, found: bool
) -> str:
    """One line of a dialog's transcript (``render_mode="ansi"``)."""
    marker = " <- target found" if found else ""
    return (
        f"turn {turn:2d} | shown {image_id} (#{shown}) | "
        f"target rank {rank:6d} ({100 * percentile:5.1f}%) | {caption!r}{marker}"
    )


class ModelParts:
    """The parts of an environment's turn model (``self.model``) as attributes of the environment.

    Shared by :class:`DialogRetrievalEnv` and the vector environment, for planning agents and
    wrappers that read ``env.unwrapped.catalog`` and the like.
    """

    model: DialogModel

    @property
    def catalog(self) -> Catalog:
        """The catalogue of the split (action indices index it): ``self.model.catalog``."""
        return self.model.catalog

    @property
    def user(self) -> UserSimulator:
        """The user simulator: ``self.model.user``."""
        return self.model.user

    @property
    def ranker(self) -> Ranker:
        """The ranking engine over the split: ``self.model.ranker``."""
        return self.model.ranker

    @property
    def vocabulary(self) -> Vocabulary:
        """The words of the feedback: ``self.model.vocabulary``."""
        return self.model.vocabulary


class DialogRetrievalEnv(ModelParts, gym.Env):
    """Dialog-based interactive image retrieval (Guo et al., NeurIPS 2018).

    ## Description

    A simulated shopper has a *target* image of the catalogue in mind. Each turn the agent shows
    one catalogue image; the shopper answers with a relative caption, how the target differs from
    what was shown ("is black with a higher heel"). The agent should find the target within
    ``max_turns`` turns. The catalogue is the embedded synthetic Shoes-like catalogue by default,
    or any :class:`~dialog_env.catalog.Catalog`; the shopper is a user simulator (default: the
    rule-based user).

    ## Action Space

    ``Discrete(N)``: the index, within the active split, of the image to show next
    (``env.unwrapped.catalog.ids[action]`` is its id). Showing an image twice is allowed.

    ## Action Mask

    ``env.unwrapped.action_masks()`` returns an ``(N,) bool`` array, True for the images *not yet
    shown* in the current dialog (the first image of ``reset`` counts as shown), the no-repeat
    mask that sb3-contrib's ``MaskablePPO`` reads (its convention: a method named
    ``action_masks``, True = allowed). It is a fresh array built from the dialog's ``turn + 1``
    shown indices, so it costs ``N`` bytes per call and the environment keeps no ``(N,)`` state.
    While a dialog runs the target is never masked (showing it ends the dialog), so at least one
    action is allowed. After the dialog ends it stays the ended dialog's mask until ``reset``;
    before the first ``reset`` every action is allowed. The mask is advice: ``step`` still
    accepts a masked action.

    ## Observation Space

    A flat ``Dict`` (Stable-Baselines3 accepts it with ``MultiInputPolicy``):

    | key | space | shape | dtype | meaning |
    | --- | --- | --- | --- | --- |
    | ``feedback`` | ``Box(0, V - 1)`` | ``(16,)`` | int64 | token ids of the shopper's feedback on the last shown image, padded with 0 (see ``env.unwrapped.vocabulary``) |
    | ``image`` | ``Box(min, max)`` | ``(D,)`` | float32 | catalogue features of the image the feedback is about |
    | ``turn`` | ``Box(0, max_turns)`` | ``(1,)`` | int64 | actions taken so far (0 after ``reset``) |

    The caption text itself is in ``info["feedback_text"]``.

    ## Rewards

    The *rank* of the target w.r.t. the shown image is the number of images of the split strictly
    closer (squared L2 on catalogue features) to the shown image than the target is; 0 when the
    target itself is shown (see :mod:`dialog_env.ranking` for ties). Its *rank percentile* is
    ``1 - rank / (N - 1)``. ``reward_mode`` selects the reward of a step:

    - ``"percentile"`` (default): the rank percentile of the turn, in ``[0, 1]`` (the paper's
      look-ahead maximises the sum of these);
    - ``"improvement"``: the rank percentile minus that of the previous turn (the first turn
      compares with the initial image), in ``[-1, 1]``;
    - ``"success"``: 1.0 when the target is shown, else 0.0;
    - a function ``reward(percentiles, previous_percentiles, found) -> rewards`` of your own, over
      ``(B,)`` arrays (``B = 1`` here, the batch in the vector environment; see
      :mod:`dialog_env.dynamics`), e.g. ``lambda p, q, found: found - 0.01``.

    ## Starting State

    The target and the first shown image are drawn uniformly from the split with
    ``self.np_random`` (the first image differs from the target). ``reset(options={"target": i,
    "initial": j})`` fixes either or both, so that evaluations can replay identical episodes.
    The first observation is the shopper's feedback on the first image.

    ## Episode End

    1. Termination: the target is shown; or, with the shopper options below, the shopper accepts
       an alternative or leaves.
    2. Truncation: ``max_turns`` actions were taken without showing the target.

    ``patience=P`` (off by default): the shopper leaves after ``P`` turns in a row that did not
    improve on the dialog's best target rank. ``accept_rank=K`` (off by default): the shopper
    accepts a shown image whose target rank is at most ``K`` (the target among its ``K`` nearest
    other images). Either ends the dialog with ``terminated=True`` and ``is_success=False``; see
    :mod:`dialog_env.tolerance` for the exact rules. They apply to every user simulator.

    Calling ``step`` after the end without ``reset`` raises :class:`~dialog_env.errors.ResetNeeded`.

    ## Info

    ``target_rank`` (int), ``rank_percentile`` (float), ``is_success`` (bool: the target was
    shown this turn), ``feedback_text`` (str), ``shown_index`` (int), ``turn`` (int), and
    ``target_index`` (int) only when ``expose_target=True``, for supervised training and
    model-based look-ahead, never for evaluation. With ``patience`` set, ``shopper_left`` (bool:
    the shopper left this turn); with ``accept_rank`` set, ``is_accepted`` (bool: the shopper
    accepted this turn's image as an alternative to the target).

    ``feedback_text`` is the only value that is not a number. ``feedback_text_in_info=False``
    leaves it out (the caption stays in the observation as token ids, and in the rendered
    transcript) for libraries that turn every info value into a tensor, such as TorchRL's
    batched ``GymEnv(..., num_envs=B)`` and ``GymWrapper`` of a ``SAME_STEP`` vector env, which
    cannot read strings (see ``tests/test_clients.py``).

    ## Rendering

    - ``"ansi"``: ``render()`` returns the transcript so far, one line per turn.
    - ``"human"``: every ``reset`` and ``step`` prints the transcript's newest line.
    - ``"rgb_array"``: ``render()`` returns one ``(H, W, 3) uint8`` frame: a picture panel
      (352 pixels high: the target and the image shown this turn, 256 x 256, drawn from their
      attributes by :func:`dialog_env.render.draw_shoe`, or a tile with the id for catalogues
      without the shoe attributes; the target's rank and percentile; the earlier shown images
      as thumbnails; the shopper's newest feedback) above the transcript (a built-in 5x7
      bitmap font, the line that found the target in green, under a header with the split, its
      size and the turn). ``W = 1456``; ``H`` depends only on ``max_turns`` (``352 + 256`` for
      10 turns), so the frames of an environment (and of a vector environment) have one shape
      and make a video (Gymnasium's ``RecordVideo``, with the ``video`` extra); transcript lines
      longer than 120 characters end with "...". The picture panel shows the target: it is for
      people watching, never an input for an agent.

    ## Model access (for planning agents)

    ``env.unwrapped.model`` is the environment's turn model, a
    :class:`~dialog_env.dynamics.DialogModel`: ``model.respond(targets, shown, rngs)`` plays one
    turn of any number of imagined dialogs (ranks, percentiles, captions, token ids) exactly as the
    environment plays it, and ``model.reward(...)`` scores it; it holds no dialog state. The paper's
    look-ahead rollouts use it and nothing else of the environment. Its parts are also
    ``env.unwrapped.catalog`` (the catalogue of the split; action indices index it),
    ``env.unwrapped.user`` (the user simulator), ``env.unwrapped.ranker`` (the ranking engine over
    the split) and ``env.unwrapped.vocabulary``.

    ## Arguments

    ```python
    import gymnasium as gym
    env = gym.make("dialog_env:DialogRetrieval-v0", split="test", max_turns=10)
    ```

    | argument | default | meaning |
    | --- | --- | --- |
    | ``catalog`` | ``None`` | ``None`` (synthetic default), an HDF5 path, synthetic settings (a mapping) or a ``Catalog`` |
    | ``split`` | ``"train"`` | catalogue split to play on |
    | ``user`` | ``"rule"`` | registered user-simulator name or a ``UserSimulator`` |
    | ``user_kwargs`` | ``None`` | keyword arguments of the named user simulator |
    | ``max_turns`` | ``10`` | actions per episode before truncation (at least 1) |
    | ``reward_mode`` | ``"percentile"`` | ``"percentile"``, ``"improvement"``, ``"success"`` or a reward function |
    | ``expose_target`` | ``False`` | add ``target_index`` to ``info`` (a bool) |
    | ``max_feedback_tokens`` | ``16`` | length of the ``feedback`` observation |
    | ``render_mode`` | ``None`` | ``"ansi"`` (transcript), ``"human"`` (printed) or ``"rgb_array"`` (frame) |
    | ``feedback_text_in_info`` | ``True`` | the caption in ``info["feedback_text"]``; ``False``: numeric infos only |
    | ``patience`` | ``None`` | turns in a row without progress before the shopper leaves (``None``: never) |
    | ``accept_rank`` | ``None`` | the shopper accepts an image whose target rank is at most this (``None``: only the target) |
    | ``vocabulary`` | ``None`` | the words ``feedback`` is encoded with (a ``Vocabulary`` or word list; other words: ``<unk>``); ``None``: the user's |
    | ``rank_table`` | ``False`` | ``True``: look the ranks of shown images up in a precomputed exact ``(N, N)`` table (see below); ``"auto"``: only when it takes at most 256 MiB; ``False``: compute them with the matrix product |

    ``rank_table`` changes speed only, never a number: the table holds exactly the ranks the
    product gives (:mod:`dialog_env.rank_table`); query vectors never read it. It takes
    ``N * N * 2`` bytes (``uint16``; 200 MB for the default 10,000-image train split, 43 MB for
    the test split) and seconds to build (3-5 s for 10,000 images on a 2-core machine), once per
    process and split, shared by every environment on that split. A step of 128 dialogs then
    takes about an eighth of the time (``benchmarks/results/env_speed.md``): worth it for long
    training runs, not for short scripts and tests, hence off by default. Building a table above
    2 GiB (32,768 images) raises a :class:`~dialog_env.errors.ConfigurationError`; a larger one
    built beforehand with ``dialog_env.rank_table.shared_rank_table(ranker, max_bytes=...)`` is
    used as it is.

    ## Version History

    - v0: initial version; ``patience``, ``accept_rank``, ``vocabulary`` and ``rank_table`` added
      later, off by default (then every dialog is unchanged; ``rank_table`` changes none anyway).
    """  # noqa: E501 - Markdown tables in the docstring

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(
        self,
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
        patience: int | None = None,
        accept_rank: int | None = None,
        vocabulary: Vocabulary | Sequence[str] | None = None,
        rank_table: bool | str = False,
    ) -> None:
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
        self.split = settings.split
        self.max_turns = settings.max_turns
        self.reward_mode = settings.reward_mode
        self.expose_target = settings.expose_target
        self.feedback_text_in_info = settings.feedback_text_in_info
        self.max_feedback_tokens = settings.max_feedback_tokens
        self.tolerance = settings.tolerance
        self._tolerance_state = ToleranceState(self.tolerance, 1)
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.catalog.num_images)
        self.observation_space = dialog_observation_space(self.model, self.max_turns)
        self._target: int | None = None
        self._shown = -1
        self._turn = 0
        self._rank = 0
        self._percentile = 0.0
        self._feedback_text = ""
        self._done = True
        self._transcript: list[str] = []
        self._shown_history: list[int] = []  # every image shown this dialog, the first one included
        self._pictures: PictureSource | None = None  # drawn on the first rgb_array render

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a dialog: draw (or take from ``options``) the target and the first image.

        Args:
            seed: seeds ``self.np_random`` (``None``: continue its stream).
            options: optional ``"target"`` and ``"initial"`` image indices (``initial != target``).

        Returns:
            ``(observation, info)``: the shopper's feedback on the first image.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"target", "initial"}
        if unknown:
            raise ConfigurationError(f"unknown reset option(s) {sorted(unknown)}; supported: 'target', 'initial'")
        num_images = self.catalog.num_images
        target = options.get("target")
        initial = options.get("initial")
        if target is not None:
            target = self._option_index(target, "target")
        else:
            target = int(self.np_random.integers(num_images))
        if initial is not None:
            initial = self._option_index(initial, "initial")
            if initial == target:
                raise ConfigurationError(f"reset options: initial image {initial} must differ from the target")
        else:
            initial = int(uniform_except(self.np_random, num_images, target))
        self._target = target
        self._turn = 0
        self._done = False
        self._transcript = []
        self._shown_history = []
        self._show(initial)
        self._tolerance_state.start(np.ones(1, dtype=np.bool_), np.array([self._rank]))
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), self._get_info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Show image ``action`` (an index of the split) and return the shopper's feedback.

        Raises:
            InvalidActionError: not an image index of the split.
            ResetNeeded: the dialog ended (or never started).
        """
        if self._done:
            raise ResetNeeded(
                "step() called after the episode ended (or before the first reset()); call reset() first"
            )
        shown = validate_action(action, self.catalog.num_images)
        previous_percentile = self._percentile
        self._turn += 1
        self._show(shown)
        found = shown == self._target
        terminated = found
        if self.tolerance.enabled:
            ends = self._tolerance_state.judge(np.ones(1, dtype=np.bool_), np.array([self._rank]), np.array([found]))
            terminated = found or bool(ends[0])
            self._transcript[-1] += self._tolerance_state.transcript_notes()[0]
        truncated = not terminated and self._turn >= self.max_turns
        self._done = terminated or truncated
        reward = self.model.reward(
            np.array([self._percentile]), np.array([previous_percentile]), np.array([found])
        )[0]
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), terminated, truncated, self._get_info()

    def action_masks(self) -> np.ndarray:
        """The no-repeat action mask of the current dialog (see "Action Mask").

        Returns:
            ``(N,) bool``: True for the images of the split not yet shown in the current dialog
            (all True before the first ``reset``); a fresh array.
        """
        mask = np.ones(self.catalog.num_images, dtype=np.bool_)
        mask[self._shown_history] = False
        return mask

    def render(self) -> str | np.ndarray | None:
        """The transcript: a string (``"ansi"``), printed (``"human"``) or a frame (``"rgb_array"``).

        ``"ansi"``: the transcript so far as a string; ``"human"``: print its newest line;
        ``"rgb_array"``: the transcript as an ``(H, W, 3) uint8`` frame (see "Rendering").
        """
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; pass render_mode='ansi', 'human' or 'rgb_array' to gym.make"
            )
            return None
        if self.render_mode == "ansi":
            return "\n".join(self._transcript) + "\n"
        if self.render_mode == "rgb_array":
            if self._pictures is None:
                self._pictures = PictureSource(self.catalog)
            return dialog_frame(
                self._pictures, target=self._target, shown_history=self._shown_history, rank=self._rank,
                percentile=self._percentile, feedback=self._feedback_text, transcript=self._transcript,
                split=self.split, turn=self._turn, max_turns=self.max_turns,
            )  # fmt: skip
        if self._transcript:
            print(self._transcript[-1])
        return None

    def close(self) -> None:
        """Drop the transcript (nothing else holds resources)."""
        self._transcript = []

    # ------------------------------------------------------------------ helpers
    def _option_index(self, value: Any, name: str) -> int:
        try:
            return validate_action(value, self.catalog.num_images)
        except InvalidActionError as error:
            raise ConfigurationError(f"reset option {name!r}: {error}") from error

    def _show(self, shown: int) -> None:
        """Show image ``shown``: one turn of the model (rank the target, ask the user for feedback)."""
        assert self._target is not None
        response = self.model.respond(np.array([self._target]), np.array([shown]), [self.np_random])
        self._shown = shown
        self._shown_history.append(shown)
        self._rank = int(response.ranks[0])
        self._percentile = float(response.percentiles[0])
        self._feedback_text = response.captions[0]
        self._feedback_ids = response.tokens[0]
        self._transcript.append(
            transcript_line(
                self._turn, self.catalog.ids[shown], shown, self._rank, self._percentile, self._feedback_text,
                shown == self._target,
            )
        )

    def _get_obs(self) -> dict[str, np.ndarray]:
        return {
            "feedback": self._feedback_ids.copy(),
            "image": self.catalog.features[self._shown].copy(),
            "turn": np.array([self._turn], dtype=np.int64),
        }

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "target_rank": self._rank,
            "rank_percentile": self._percentile,
            "is_success": self._shown == self._target,
            "feedback_text": self._feedback_text,
            "shown_index": self._shown,
            "turn": self._turn,
        }
        if not self.feedback_text_in_info:
            del info["feedback_text"]
        if self.expose_target:
            info["target_index"] = self._target
        for key, value in self._tolerance_state.info_values().items():
            info[key] = bool(value[0])
        return info
