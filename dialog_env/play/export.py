"""Dialog logs as a Minari dataset for offline RL.

Each finished dialog of the logs (people as shoppers, and people as the search engine against the
simulated shopper) is replayed through ``DialogRetrievalEnv`` with :class:`QueuedFeedback`, a
user "simulator" that says the logged words again, and written with Minari's
``create_dataset_from_buffers`` (which, unlike its ``DataCollector``, needs no JAX): the dataset
holds exactly the observations (token ids of the feedback, the shown image's features, the turn),
actions, rewards, terminations and truncations an agent would have seen in those dialogs. A
dialog given up before its last turn ends with ``truncated=True`` at its last logged turn.

The feedback is encoded with one vocabulary for the whole dataset (an agent's, from its run; by
default the rule-based user's): words outside it become ``<unk>`` in the observations, and the
logs keep the typed text. Minari is an optional dependency (``pip install -e ".[play]"``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, DataFormatError, DependencyNotInstalled
from dialog_env.play.log import LoggedDialog, read_dialogs
from dialog_env.play.session import QueuedFeedback
from dialog_env.text import Vocabulary

__all__ = ["ExportReport", "export_minari"]


@dataclass
class ExportReport:
    """What an export wrote and left out."""

    dataset_id: str
    path: Path
    episodes: int
    steps: int
    human_episodes: int
    simulated_episodes: int
    skipped_unfinished: int
    skipped_without_steps: int


@contextlib.contextmanager
def _datasets_path(out: Path) -> Iterator[None]:
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(out)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def export_minari(
    logs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    dataset_id: str,
    out: str | os.PathLike[str],
    *,
    vocabulary: Vocabulary | None = None,
    catalog: Catalog | str | None = None,
    overwrite: bool = False,
    author: str | None = None,
) -> ExportReport:
    """Write the finished dialogs of ``logs`` as the Minari dataset ``dataset_id`` under ``out``.

    Args:
        logs: one or several dialog logs (JSONL) of ``python -m dialog_env.play``.
        dataset_id: Minari's ``namespace/name-vN`` form, e.g. ``"dialog-retrieval/human-v0"``.
        out: the datasets folder (Minari's ``MINARI_DATASETS_PATH``; the dataset goes in a folder
            of its id inside).
        vocabulary: the words of the observations (default: the rule-based user's).
        catalog: the catalogue the dialogs were played on, or its path (default: the one their
            logs name; every dialog must name the same one and the same split).
        overwrite: replace an existing dataset of that id under ``out``.
        author: recorded in the dataset's metadata.

    Returns:
        An :class:`ExportReport`.

    Raises:
        DependencyNotInstalled: Minari is missing.
        DataFormatError: no finished dialog with a step, dialogs of different catalogues or splits,
            a logged image index outside the catalogue.
        ConfigurationError: the dataset exists and ``overwrite`` is false.
    """
    try:
        import minari
    except ImportError as error:
        raise DependencyNotInstalled('Minari export needs minari: pip install -e ".[play]"') from error
    from dialog_env.env import DialogRetrievalEnv, make_catalog
    from dialog_env.users.base import make_user

    dialogs = read_dialogs(logs)
    finished = [d for d in dialogs if d.finished]
    playable = [d for d in finished if len(d.turns) >= 2]
    if not playable:
        raise DataFormatError(
            f"no finished dialog with at least one step in the logs ({len(dialogs)} dialogs, {len(finished)} finished)"
        )
    places = {(d.catalog, d.split) for d in playable}
    if len(places) > 1:
        raise DataFormatError(f"the dialogs were played on different catalogues or splits: {sorted(map(str, places))}")
    ((catalog_name, split),) = places
    full = make_catalog(catalog if catalog is not None else catalog_name)
    if split not in full.splits:
        raise DataFormatError(f"the dialogs were played on split {split!r}, which catalogue {full.name!r} lacks")
    split_catalog = full.select(split)
    max_turns = max(d.max_turns for d in playable)
    for dialog in playable:
        indices = [dialog.target] + [turn.shown for turn in dialog.turns]
        if max(indices) >= split_catalog.num_images or min(indices) < 0:
            raise DataFormatError(
                f"dialog {dialog.dialog!r} names image {max(indices)}, outside the {split_catalog.num_images} images "
                f"of split {split!r}: the logs do not belong to this catalogue"
            )
    words = vocabulary if vocabulary is not None else make_user("rule").vocabulary
    out = Path(out)
    with _datasets_path(out):
        if dataset_id in minari.list_local_datasets():
            if not overwrite:
                raise ConfigurationError(f"dataset {dataset_id!r} exists under {str(out)!r}; pass overwrite=True")
            minari.delete_dataset(dataset_id)
        user = QueuedFeedback(words)
        env = DialogRetrievalEnv(
            catalog=full, split=split, user=user, max_turns=max_turns, feedback_text_in_info=False, vocabulary=words
        )
        buffers = [_replay(env, user, dialog, index) for index, dialog in enumerate(playable)]
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env,
            # To evaluate on: the same catalogue, split and words, with the rule-based shopper (a spec
            # Minari can store; the replay env's logged-feedback user is not one).
            eval_env=None
            if isinstance(catalog, Catalog)
            else gym.make(
                "DialogRetrieval-v0",
                catalog=catalog if catalog is not None else catalog_name,
                split=split,
                max_turns=max_turns,
                feedback_text_in_info=False,
                vocabulary=list(words.words),
            ),
            algorithm_name="people and simulated shoppers, python -m dialog_env.play",
            author=author,
            description=(
                "Dialogs of dialog-based interactive image retrieval logged by python -m dialog_env.play: "
                f"{sum(d.mode == 'shopper' for d in playable)} with a person as the shopper, "
                f"{sum(d.mode == 'agent' for d in playable)} with a person as the search engine."
            ),
            data_format="hdf5",
        )
        steps = sum(len(buffer) for buffer in buffers)
        path = out / dataset_id
    return ExportReport(
        dataset_id=dataset_id,
        path=path,
        episodes=len(playable),
        steps=steps,
        human_episodes=sum(d.mode == "shopper" for d in playable),
        simulated_episodes=sum(d.mode == "agent" for d in playable),
        skipped_unfinished=len(dialogs) - len(finished),
        skipped_without_steps=len(finished) - len(playable),
    )


def _replay(env: Any, user: QueuedFeedback, dialog: LoggedDialog, index: int) -> Any:
    """One logged dialog replayed through ``env``, as a Minari episode buffer.

    A dialog the environment did not end (given up, or played with fewer turns than ``env``
    allows) ends with ``truncated=True`` at its last logged turn.

    Raises:
        DataFormatError: a replayed rank differs from the logged one (the log is not of this catalogue).
    """
    from minari.data_collector.episode_buffer import EpisodeBuffer

    user.queue = [turn.feedback for turn in dialog.turns]
    options = {"target": dialog.target, "initial": dialog.turns[0].shown}
    observation, info = env.reset(options=options)
    observations, ranks = [observation], [int(info["target_rank"])]
    actions, rewards, terminations, truncations = [], [], [], []
    last = len(dialog.turns) - 1
    for turn in dialog.turns[1:]:
        observation, reward, terminated, truncated, info = env.step(turn.shown)
        observations.append(observation)
        ranks.append(int(info["target_rank"]))
        actions.append(turn.shown)
        rewards.append(float(reward))
        ended = terminated or truncated
        terminations.append(bool(terminated))
        truncations.append(bool(truncated or (turn.turn == last and not ended)))
        if ended:
            break
    logged = [turn.rank for turn in dialog.turns]
    if ranks != logged:
        raise DataFormatError(
            f"dialog {dialog.dialog!r} replays with target ranks {ranks}, its log says {logged}: the log was not "
            "played on this catalogue"
        )
    return EpisodeBuffer(
        id=index,
        options=options,
        observations={key: np.stack([o[key] for o in observations]) for key in observations[0]},
        actions=np.asarray(actions, dtype=np.int64),
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
        infos={},
    )
