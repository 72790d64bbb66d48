"""Training with resume: the paper's agent in two stages, and the Stable-Baselines3 baselines.

The paper's agent (:func:`train_paper_agent`) is pre-trained with supervision (stage 1,
:func:`agents.dialog_manager.pretrain`), evaluated once (that evaluation is kept: stage 2 changes
the model), then improved with the look-ahead policy (stage 2, :func:`agents.policy_improvement.improve`)
with its image encoder frozen (:func:`stage2_optimizer`). It writes, in one checkpoint folder:

| file | written | holds |
| --- | --- | --- |
| ``last.pt`` | every ``checkpoint_every`` iterations, at each stage's end, on a stop | where to resume |
| ``stage1.pt`` | after stage 1 | the pre-trained model (stage ``"improve"``, iteration 0) |
| ``final.pt`` | at the end | the final model (stage ``"done"``) |

Every file is written atomically (:func:`agents.checkpoints.save_checkpoint`), so a process killed
at any moment leaves the previous complete checkpoint, and iteration ``i`` draws only from the
seed and ``i``: a run resumed from ``last.pt`` (:func:`read_training_checkpoint`) reaches the
numbers of an uninterrupted one. Stage 2's budget may grow after the fact (a finished run
continues stage 2 where it ended); :func:`resume_changes` lists what else changed since a run started.

A Stable-Baselines3 agent (:func:`train_sb3_agent`) writes ``last.zip`` midway and ``final.zip`` at
the end (:mod:`agents.sb3_checkpoints`); a resumed run continues from ``last.zip`` with the same
budget, not the same digits.

Both count their interaction budget (:class:`~dialog_env.dynamics.InteractionBudget`: captions of
the user simulator, the paper's look-ahead included), log it and keep snapshots of the model at
fixed budgets (:mod:`agents.snapshots`), so that agents are compared at equal budgets.

Nothing here parses arguments or prints: progress, news and training metrics go to the
:class:`TrainingHooks` the caller passes (silent by default), and a stop request (e.g. Ctrl-C,
:func:`stop_on_sigint`) ends training with a checkpoint and :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from agents.checkpoints import check_checkpoint_fits, load_checkpoint, load_weights, save_checkpoint
from agents.dialog_manager import DialogManager, DialogManagerAgent, DialogManagerConfig, pretrain
from agents.dialog_retriever import DialogRetriever, DialogRetrieverConfig, train_retriever
from agents.distributed import SINGLE_PROCESS, DialogShard
from agents.evaluation import EpisodeSet, evaluate, summarize
from agents.policy_improvement import improve
from agents.registry import SB3_QUERY_AGENTS, describe, is_sb3_agent
from agents.snapshots import SnapshotIndex
from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError
from dialog_env.io import atomic_path, atomic_write_json, read_json_object

if TYPE_CHECKING:  # Stable-Baselines3 is optional: imported only by train_sb3_agent
    from agents.sb3 import SB3Agent

__all__ = [
    "BUDGET_ARGS", "FINAL_CHECKPOINT", "LAST_CHECKPOINT", "SB3_FINAL_MODEL", "SB3_LAST_MODEL", "STAGE1_CHECKPOINT",
    "STAGES", "TRAINING_ARGS", "TRAINING_KEYS", "PaperTrainingConfig", "paper_iteration_calls", "ProgressBar",
    "RETRIEVER_TRAINING_ARGS", "RetrieverTrainingConfig", "retriever_iteration_calls", "train_retriever_agent",
    "SB3TrainingConfig", "SettingChange", "StageEvaluation", "TrainingHooks", "TrainingInterrupted",
    "final_model_path", "is_finished", "prepare_torch", "read_trained_budget", "read_training_checkpoint",
    "remove_interrupted_writes", "resume_changes", "stage2_optimizer", "stop_on_sigint", "torch_threads_for",
    "train_paper_agent", "train_sb3_agent",
]  # fmt: skip

#: Checkpoint files of the paper's agent in its checkpoint folder (see the module docstring).
LAST_CHECKPOINT, STAGE1_CHECKPOINT, FINAL_CHECKPOINT = "last.pt", "stage1.pt", "final.pt"
#: The final model of a Stable-Baselines3 agent in its checkpoint folder, and its mid-run checkpoint.
SB3_FINAL_MODEL, SB3_LAST_MODEL = "final.zip", "last.zip"
#: The stages a training checkpoint of the paper's agent can be in.
STAGES = ("pretrain", "improve", "done")
#: What a training checkpoint holds besides :data:`agents.checkpoints.REQUIRED_KEYS`, with its type.
TRAINING_KEYS: dict[str, type | tuple[type, ...]] = {
    "stage": str, "iteration": int, "optimizer": dict, "base": (dict, type(None)), "args": dict, "results": dict,
}  # fmt: skip
#: Settings (``train_agent.py``'s option names, the keys of a checkpoint's ``"args"``) that change
#: what a run trains or how it is evaluated: a resumed run that changes one mixes two settings.
TRAINING_ARGS = (
    "agent", "seed", "catalog", "train_split", "user", "user_kwargs", "train_turns", "batch_size", "pretrain_lr",
    "margin", "improve_lr", "top_k", "tau", "num_negatives", "total_timesteps", "n_envs", "eval_split", "max_turns",
    "eval_episodes", "eval_seed", "budget_calls", "sb3_hyperparameters",
)  # fmt: skip
#: Settings of the dialog retriever's training (compared on resumption of a run of that agent only).
RETRIEVER_TRAINING_ARGS = (
    "retriever_lr", "retriever_loss", "retriever_hard_negatives", "retriever_margin", "retriever_selection",
    "retriever_history",
)  # fmt: skip
#: Iteration budgets a resumed run may raise (stage 1's only while stage 1 is still running).
BUDGET_ARGS = ("pretrain_iterations", "improve_iterations", "retriever_iterations")


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class PaperTrainingConfig:
    """Settings of the paper's agent's two stages; the defaults are the paper's (Sec. 4).

    Attributes:
        seed: seed of the training dialogs and draws (iteration ``i`` depends on it and ``i`` only).
        train_split: catalogue split to train on.
        train_turns: turns per training dialog (5 in the paper).
        batch_size: training dialogs per iteration ``B`` (128 in the paper).
        pretrain_iterations: stage 1 iterations.
        pretrain_lr: stage 1 Adam learning rate.
        margin: stage 1 triplet margin.
        improve_iterations: stage 2 iterations; 0 skips stage 2.
        improve_lr: stage 2 Adam learning rate.
        top_k: stage 2 candidates looked ahead per turn (K).
        tau: stage 2 softmax temperature.
        num_negatives: stage 2 random negatives in the softmax.
        checkpoint_every: iterations between two writes of ``last.pt``.
        snapshot_calls: interaction budgets (simulator calls, look-ahead included) at which a
            copy of the model is kept: after the first iteration that reaches each budget, as
            ``snapshots/calls-<budget>.pt`` (for learning curves; see :func:`snapshot_path`).
    """

    seed: int = 1
    train_split: str = "train"
    train_turns: int = 5
    batch_size: int = 128
    pretrain_iterations: int = 600
    pretrain_lr: float = 1e-3
    margin: float = 0.1
    improve_iterations: int = 100
    improve_lr: float = 1e-4
    top_k: int = 4
    tau: float = 0.2
    num_negatives: int = 5
    checkpoint_every: int = 100
    snapshot_calls: tuple[int, ...] = ()


@dataclass(frozen=True)
class SB3TrainingConfig:
    """Settings of a Stable-Baselines3 agent's training.

    Attributes:
        agent: one of :data:`agents.registry.SB3_AGENTS`.
        seed: seed of the model and of the training environments' first resets.
        train_split: catalogue split to train on.
        train_turns: turns per training dialog.
        total_timesteps: environment steps of training.
        n_envs: training environments stepped together.
        budget_calls: stop once the user simulator has written this many captions
            (:class:`~dialog_env.dynamics.InteractionBudget`), or at ``total_timesteps``,
            whichever comes first; ``None``: ``total_timesteps`` only.
        checkpoint_every_steps: environment steps between two writes of ``last.zip`` (0: none midway).
        snapshot_calls: interaction budgets at which a copy of the model is kept
            (``snapshots/calls-<budget>.zip``, see :func:`snapshot_path`).
        hyperparameters: the model's hyper-parameters over its row of
            :data:`agents.sb3.MODEL_SPECS` (keyword arguments of :func:`agents.sb3.make_model`).
    """

    agent: str
    seed: int = 1
    train_split: str = "train"
    train_turns: int = 5
    total_timesteps: int = 50_000
    n_envs: int = 4
    budget_calls: int | None = None
    checkpoint_every_steps: int = 100_000
    snapshot_calls: tuple[int, ...] = ()
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class StageEvaluation:
    """Where the paper's agent is evaluated after stage 1 (:func:`agents.evaluation.evaluate`).

    Attributes:
        episodes: the fixed evaluation episodes.
        env_kwargs: ``evaluate()``'s environment arguments, the split included.
        max_turns: turns per evaluation dialog.
        seed: seed of the user simulator's randomness and of the bootstrap intervals.
        knn: the agent's nearest-image search (:class:`agents.dialog_manager.DialogManagerAgent`).
        knn_options: settings of its FAISS index.
    """

    episodes: EpisodeSet
    env_kwargs: Mapping[str, Any]
    max_turns: int = 10
    seed: int = 0
    knn: str = "exact"
    knn_options: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- reporting and stopping
class ProgressBar(Protocol):
    """What training needs of a progress bar (``tqdm`` has it)."""

    def update(self, n: int = 1) -> Any:
        """Advance by ``n``."""

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True) -> Any:
        """Show these values beside the bar."""

    def close(self) -> Any:
        """The bar is done."""


@dataclass(frozen=True)
class TrainingHooks:
    """How training reports its progress and learns that it should stop; every hook is optional.

    The default reports nothing and never stops.

    Attributes:
        log: one line of news (``"resumed from ...: stage pretrain, iteration 40"``,
            ``"evaluating paper-stage1 ..."``), e.g. ``print``.
        progress: makes a progress bar from ``(total, initial, description)``, e.g. a ``tqdm``
            factory; the bar advances by one per iteration (SB3: per environment step).
        scalar: receives each training metric as ``(tag, value, step)`` with tags
            ``train/stage1_loss``, ``train/stage2_<metric>``..., e.g. ``SummaryWriter.add_scalar``.
        stop_requested: asked after every iteration of the paper's agent; ``True`` writes
            ``last.pt`` and raises :class:`TrainingInterrupted` (see :func:`stop_on_sigint`).
    """

    log: Callable[[str], None] | None = None
    progress: Callable[[int, int, str], ProgressBar] | None = None
    scalar: Callable[[str, float, int], None] | None = None
    stop_requested: Callable[[], bool] | None = None

    def say(self, message: str) -> None:
        """Send ``message`` to :attr:`log`, if any."""
        if self.log is not None:
            self.log(message)

    def bar(self, total: int, initial: int, description: str) -> ProgressBar:
        """A progress bar from :attr:`progress`, or one that shows nothing."""
        return self.progress(total, initial, description) if self.progress is not None else _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class TrainingInterrupted(Exception):
    """Training stopped on request after writing ``last.pt``; resume from it to continue.

    Attributes:
        checkpoint: the checkpoint written.
        stage: 1 or 2.
        iteration: the iterations of that stage done (the one to resume at).
    """

    def __init__(self, checkpoint: Path, stage: int, iteration: int) -> None:
        super().__init__(f"checkpoint saved after stage {stage} iteration {iteration} in {checkpoint}")
        self.checkpoint, self.stage, self.iteration = checkpoint, stage, iteration


@contextlib.contextmanager
def stop_on_sigint(notice: Callable[[str], None] | None = None) -> Iterator[Callable[[], bool]]:
    """While active, a first Ctrl-C (SIGINT) asks training to stop; a second one aborts at once.

    Use it in the main thread: ``with stop_on_sigint(notice) as stop: train_paper_agent(...,
    hooks=TrainingHooks(stop_requested=stop))``. The previous handler is restored on exit.

    Args:
        notice: told about the first Ctrl-C (e.g. a print to stderr).

    Yields:
        ``stop_requested()``: whether Ctrl-C was pressed.
    """
    requested = False

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        if notice is not None:
            notice("Ctrl-C: stopping after this iteration (press again to abort without saving)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------- process set-up
def prepare_torch(seed: int, threads: int = 0) -> None:
    """Seed torch's and NumPy's global generators and set torch's CPU threads, before any model is built.

    The paper's model and the SB3 networks draw their initial weights from torch's global
    generator; nothing of this project draws from NumPy's, which is pinned for third-party code.

    Args:
        seed: the run's seed.
        threads: torch CPU threads; 0 keeps torch's default (see :func:`torch_threads_for`).
    """
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)


def torch_threads_for(agent: str, requested: int = 0) -> int:
    """Torch CPU threads for ``agent``: ``requested`` if > 0, else a default that suits it.

    The default is 1 for the SB3 agents (their small networks run about 3x faster on one thread
    than on one per core here) and 0, torch's default, for the others.
    """
    return requested or (1 if is_sb3_agent(agent) else 0)


# ---------------------------------------------------------------------------- resume
def final_model_path(checkpoint_dir: str | Path, agent: str) -> Path:
    """Where a finished run of ``agent`` keeps its final model: ``final.pt``, or ``final.zip`` for SB3 agents."""
    describe(agent)
    return Path(checkpoint_dir) / (SB3_FINAL_MODEL if is_sb3_agent(agent) else FINAL_CHECKPOINT)


def read_trained_budget(model_path: str | Path) -> InteractionBudget | None:
    """The interaction budget a saved model was trained with, or ``None`` if it was saved without one.

    Args:
        model_path: a checkpoint of the paper's agent (``.pt``: its ``"budget"``) or an SB3 model
            (``.zip``: the ``.json`` beside it that :func:`train_sb3_agent` writes).

    Raises:
        ConfigurationError: an unreadable file or budget.
    """
    model_path = Path(model_path)
    if model_path.suffix == ".zip":
        state = model_path.with_suffix(".json")
        return InteractionBudget.from_dict(_read_state(state)["budget"]) if state.exists() else None
    payload = load_checkpoint(model_path)
    return InteractionBudget.from_dict(payload["budget"]) if "budget" in payload else None


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of the paper's agent (``last.pt``), with every key a resume needs checked.

    Raises:
        ConfigurationError: unreadable, not a checkpoint, a missing key, or an unknown stage.
    """
    payload = load_checkpoint(path)
    for key, kind in TRAINING_KEYS.items():
        if key not in payload:
            raise ConfigurationError(
                f"checkpoint {str(path)!r} lacks the key {key!r}, which --resume needs (it holds {sorted(payload)})"
            )
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise ConfigurationError(f"checkpoint {str(path)!r}: {key!r} is a {type(payload[key]).__name__}")
    if payload["stage"] not in STAGES:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} is at stage {payload['stage']!r}; this code knows the stages {list(STAGES)}"
        )
    if payload["iteration"] < 0:
        raise ConfigurationError(f"checkpoint {str(path)!r} is at iteration {payload['iteration']}, expected >= 0")
    if payload.get("agent", "paper") == "paper" and payload["stage"] != "pretrain" and payload["base"] is None:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} is at stage {payload['stage']!r} but holds no stage-1 model ('base')"
        )
    return payload


def is_finished(checkpoint: Mapping[str, Any], improve_iterations: int) -> bool:
    """Whether a training checkpoint is the end of a training with ``improve_iterations`` stage-2 iterations."""
    return checkpoint["stage"] == "done" and checkpoint["iteration"] >= improve_iterations


def remove_interrupted_writes(checkpoint_dir: str | Path) -> list[Path]:
    """Remove the temporary files of writes cut short by a crash (``kill -9``, power loss); returns them.

    The checkpoints they were replacing are intact, so they only take space. Call it only while
    no other process can be writing the folder (a locked :class:`~dialog_env.runs.RunFolder`).
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    # The temporary names of dialog_env.io.atomic_path: ".NAME.tmp-PID", or ".tmp-PID-NAME" with keep_suffix.
    stale = [*folder.glob(".*.tmp-*"), *folder.glob(".tmp-*")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@dataclass(frozen=True)
class SettingChange:
    """One setting that differs between a run's start and its resumption.

    Attributes:
        key: the setting's name (a key of :data:`TRAINING_ARGS` or :data:`BUDGET_ARGS`).
        before: its value when the run started.
        now: its value now.
        reason: for a budget, why the change is refused; ``None`` for a setting that may not change at all.
    """

    key: str
    before: Any
    now: Any
    reason: str | None = None


def resume_changes(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], checkpoint: Mapping[str, Any] | None
) -> list[SettingChange]:
    """The settings of ``current`` that a resumption of the run started with ``previous`` may not change.

    Settings of :data:`TRAINING_ARGS` (and, for the dialog retriever, :data:`RETRIEVER_TRAINING_ARGS`) may not
    change (``user_kwargs`` is compared as an object: its spelling does not count). Iteration budgets
    (:data:`BUDGET_ARGS`) may grow, stage 1's only while stage 1 runs. Other settings (device, threads,
    progress...) may change freely.

    Args:
        previous: the settings the run started with (a checkpoint's ``"args"``, or ``config.json``'s);
            ``None`` when unknown (nothing is checked).
        current: the settings now.
        checkpoint: the training checkpoint resumed from (its stage and iteration), if any.

    Returns:
        Each refused difference, in the order of :data:`TRAINING_ARGS` then :data:`BUDGET_ARGS`.
    """
    if previous is None:
        return []
    changes = []
    retriever = current.get("agent") == "dialog-retriever"
    for key in TRAINING_ARGS + (RETRIEVER_TRAINING_ARGS if retriever else ()):
        before, now = previous.get(key), current.get(key)
        if key == "user_kwargs":
            before, now = _as_object(before), _as_object(now)
        if before != now:
            changes.append(SettingChange(key, previous.get(key), current.get(key)))
    stage = checkpoint["stage"] if checkpoint else None
    iteration = checkpoint["iteration"] if checkpoint else 0
    for key in BUDGET_ARGS:
        before, now = previous.get(key), current.get(key)
        if before is None or before == now:
            continue
        if now < before:
            changes.append(SettingChange(key, before, now, "a budget may grow, not shrink"))
        elif key == "pretrain_iterations" and stage not in (None, "pretrain"):
            changes.append(SettingChange(key, before, now, f"stage 1 already finished after {before} iterations"))
        elif key == "pretrain_iterations" and now < iteration:
            changes.append(SettingChange(key, before, now, f"the checkpoint is at iteration {iteration}"))
    return changes


def _as_object(value: Any) -> Any:
    """Keyword arguments given as a JSON string (or nothing) as a dict, to compare their content."""
    if not value:
        return {}
    return json.loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------- the paper's agent
def paper_iteration_calls(config: PaperTrainingConfig) -> tuple[int, int]:
    """Simulator calls of one stage-1 and one stage-2 iteration of the paper's agent with ``config``.

    Each iteration plays ``B`` dialogs of ``T`` turns (``B (T + 1)`` captions, the first image's
    included); at turn ``t`` stage 2 also rolls each of its ``K`` candidates forward ``T - t - 1``
    turns, one caption per imagined turn: ``B K T (T - 1) / 2`` look-ahead calls (catalogues with
    more than ``K + T`` images; smaller ones run out of candidates). ``tests/test_budget.py``
    checks this against the counted budget.
    """
    turns, batch = config.train_turns, config.batch_size
    dialog = batch * (turns + 1)
    return dialog, dialog + batch * config.top_k * turns * (turns - 1) // 2


def stage2_optimizer(model: DialogManager, lr: float) -> torch.optim.Optimizer:
    """Adam over everything but the image encoder, which it freezes (stage 2 keeps the embedding space)."""
    for parameter in model.image_encoder.parameters():
        parameter.requires_grad_(False)
    return torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("image_encoder.")], lr=lr)


def train_paper_agent(
    config: PaperTrainingConfig,
    env_kwargs: Mapping[str, Any],
    checkpoint_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    evaluation: StageEvaluation | None = None,
    resumed: Mapping[str, Any] | None = None,
    run_settings: Mapping[str, Any] | None = None,
    hooks: TrainingHooks | None = None,
    shard: DialogShard = SINGLE_PROCESS,
) -> tuple[DialogManager, dict[str, Any], InteractionBudget | None]:
    """Stage 1 then stage 2, with checkpoints in ``checkpoint_dir`` (see the module docstring).

    The interaction budget (captions of the user simulator: the training dialogs' turns, and
    stage 2's look-ahead rollouts) is counted from the training environment's turn model, kept in
    every checkpoint (``"budget"``), logged after every iteration (``budget/simulator_calls``,
    ``budget/dialog_turns``, ``budget/lookahead_calls`` against the iteration over both stages)
    and added to the stage-1 summary (``"interaction_budget"``).

    The model's initial weights come from torch's global generator: seed it first
    (:func:`prepare_torch`) for a reproducible run.

    Args:
        config: the stages' settings.
        env_kwargs: arguments of the training environments (``gym.make_vec("DialogRetrieval-v0")``:
            ``catalog``, ``user``, ``user_kwargs``...); the split, turns and batch come from ``config``.
        checkpoint_dir: where ``last.pt``, ``stage1.pt`` and ``final.pt`` are written.
        device: where the model trains.
        evaluation: where the stage-1 model is evaluated (result ``"paper-stage1"``); ``None`` skips it.
        resumed: the checked ``last.pt`` of an interrupted run (:func:`read_training_checkpoint`):
            training continues from its stage and iteration with its optimizer state and results.
        run_settings: what the run was started with, kept in every checkpoint as ``"args"``
            (compared by :func:`resume_changes` on resumption).
        hooks: progress, news, metrics and stop requests (default: silent, never stopped).
        shard: this process's share of a data-parallel job (:mod:`agents.distributed`; every
            process of the job calls this function with the same arguments): it plays its
            ``batch_size / world_size`` dialogs of each iteration, the budget and metrics are those of
            all processes, a stop request seen by any process stops all, and only process 0 writes
            checkpoints and snapshots and evaluates the stage-1 model (the others' results stay
            empty). The default trains alone.

    Returns:
        The final model, the results so far (``{"paper-stage1": summary}`` with an evaluation) and
        the interaction budget spent by the whole run (``None`` when it resumed a checkpoint
        written before budgets were counted).

    Raises:
        TrainingInterrupted: a stop request (``last.pt`` was written).
        ConfigurationError: ``resumed`` does not fit this catalogue, user or model.
    """
    checkpoint_dir = Path(checkpoint_dir)
    hooks = hooks or TrainingHooks()
    envs, train_env = _training_envs(shard.local_batch(config.batch_size), config.train_split, config.train_turns,
                                     env_kwargs)  # fmt: skip
    vocabulary_words = train_env.vocabulary.words
    model_config = DialogManagerConfig(image_dim=train_env.catalog.dim, vocab_size=len(train_env.vocabulary))
    model = DialogManager(model_config).to(device)
    base: DialogManager | None = None
    stage, iteration = "pretrain", 0
    results: dict[str, Any] = {}
    optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=config.pretrain_lr)
    spent_before: InteractionBudget | None = InteractionBudget()  # by the run before this process
    snapshots = SnapshotIndex(checkpoint_dir, config.snapshot_calls, ".pt")

    last = checkpoint_dir / LAST_CHECKPOINT
    if resumed is not None:
        check_checkpoint_fits(resumed, last, model_config.image_dim, vocabulary_words)
        stage, iteration, results = resumed["stage"], resumed["iteration"], dict(resumed["results"])
        load_weights(model, resumed["model"], last, "model")
        if stage in ("improve", "done"):
            base = DialogManager(model_config).to(device)
            load_weights(base, resumed["base"], last, "base")
            # Stage 2 trains all but the image encoder: its optimizer holds fewer parameter groups' state.
            optimizer = stage2_optimizer(model, config.improve_lr)
        load_weights(optimizer, resumed["optimizer"], last, "optimizer")
        if stage == "done" and iteration < config.improve_iterations:
            stage = "improve"  # a larger stage-2 budget: continue stage 2 where it ended
        hooks.say(f"resumed from {last}: stage {resumed['stage']}, iteration {iteration}")
        if "budget" in resumed:
            spent_before = InteractionBudget.from_dict(resumed["budget"])
        else:
            spent_before = None
            hooks.say(f"{last} predates interaction budgets: this run's budget is unknown and not reported")
    counted_from = train_env.model.budget()

    def spent() -> InteractionBudget | None:
        """The whole run's budget so far (all processes' calls on top of the resumed run's; every process calls it)."""
        if spent_before is None:
            return None
        return spent_before + shard.total_budget(train_env.model.budget() - counted_from)

    def checkpoint(next_iteration: int, path: Path = last, budget: InteractionBudget | None = None) -> None:
        """Write a checkpoint (process 0 only) with the run's ``budget`` so far."""
        if not shard.is_main:
            return
        save_checkpoint(path, {
            "stage": stage, "iteration": next_iteration,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "base": None if base is None else base.state_dict(), "model_config": dataclasses.asdict(model_config),
            "vocabulary": vocabulary_words, "args": dict(run_settings or {}), "results": results,
            **({} if budget is None else {"budget": budget.as_dict()}),
        })  # fmt: skip

    def global_iteration(stage_number: int, i: int) -> int:
        return i if stage_number == 1 else config.pretrain_iterations + i

    def after_iteration(name: str, stage_number: int, bar: ProgressBar) -> Callable[[int, dict[str, float]], None]:
        """The per-iteration callback of a stage: report, honour a stop request, checkpoint periodically."""

        def callback(i: int, metrics: dict[str, float]) -> None:
            budget = spent()
            _report_iteration(hooks, bar, name, i, metrics, budget, global_iteration(stage_number, i + 1))
            if budget is not None and shard.is_main:
                for calls in snapshots.due(budget):
                    checkpoint(i + 1, snapshots.model_path(calls), budget)
                    snapshots.record(calls, budget, stage=stage, iteration=i + 1)
            if shard.any(hooks.stop_requested is not None and hooks.stop_requested()):
                checkpoint(i + 1, budget=budget)
                raise TrainingInterrupted(last, stage_number, i + 1)
            if (i + 1) % config.checkpoint_every == 0:
                checkpoint(i + 1, budget=budget)

        return callback

    try:
        if stage == "pretrain":
            bar = hooks.bar(config.pretrain_iterations, iteration, "stage 1 (pre-training)")
            pretrain(
                model, train_env, config.pretrain_iterations, optimizer, seed=config.seed, start_iteration=iteration,
                margin=config.margin, device=device, on_iteration=after_iteration("stage1", 1, bar), shard=shard,
            )  # fmt: skip
            bar.close()
            stage1_budget = spent()
            if evaluation is not None and shard.is_main:
                hooks.say("evaluating paper-stage1 ...")
                agent = DialogManagerAgent(model, device, "paper-stage1", evaluation.knn, evaluation.knn_options)
                result = evaluate(
                    agent,
                    evaluation.episodes,
                    evaluation.env_kwargs,
                    max_turns=evaluation.max_turns,
                    seed=evaluation.seed,
                )
                results["paper-stage1"] = summarize(result, seed=evaluation.seed)
                results["paper-stage1"]["interaction_budget"] = (
                    None if stage1_budget is None else stage1_budget.as_dict()
                )
            base = copy.deepcopy(model)
            stage, iteration = "improve", 0
            optimizer = stage2_optimizer(model, config.improve_lr)
            checkpoint(0, checkpoint_dir / STAGE1_CHECKPOINT, stage1_budget)
            checkpoint(0, budget=stage1_budget)
        if stage == "improve" and config.improve_iterations > 0:
            assert base is not None
            bar = hooks.bar(config.improve_iterations, iteration, "stage 2 (policy improvement)")
            improve(
                model, base, train_env, config.improve_iterations, optimizer, seed=config.seed,
                start_iteration=iteration, top_k=config.top_k, tau=config.tau, num_negatives=config.num_negatives,
                device=device, on_iteration=after_iteration("stage2", 2, bar), shard=shard,
            )  # fmt: skip
            bar.close()
        stage = "done"
        final_budget = spent()
        checkpoint(config.improve_iterations, budget=final_budget)
        checkpoint(config.improve_iterations, checkpoint_dir / FINAL_CHECKPOINT, final_budget)
    finally:
        envs.close()
    return model, results, final_budget


# ---------------------------------------------------------------------------- Stable-Baselines3 agents
def train_sb3_agent(
    config: SB3TrainingConfig,
    env_kwargs: Mapping[str, Any],
    final_path: str | Path,
    *,
    device: torch.device | str = "cpu",
    tensorboard_log: str | Path | None = None,
    resume: bool = False,
    hooks: TrainingHooks | None = None,
) -> tuple[SB3Agent, InteractionBudget | None]:
    """Train a Stable-Baselines3 agent, with mid-run checkpoints, and write it to ``final_path`` atomically.

    The model trains on ``config.train_split`` with ``config.n_envs`` dialogs stepped by the native
    vector environment (:func:`agents.sb3.make_training_env`) of ``config.train_turns`` turns, for
    ``config.total_timesteps`` steps or until ``config.budget_calls`` simulator calls, whichever
    comes first. :class:`agents.sb3_checkpoints.BudgetCallback` counts the interaction budget
    (logged to TensorBoard as ``budget/*``), writes ``last.zip`` (and ``last.json``, and the
    replay buffer of off-policy algorithms) next to ``final_path`` every
    ``config.checkpoint_every`` steps and on a stop request, and keeps the ``config.snapshot_calls``
    snapshots. At the end ``final_path`` and ``final.json`` (steps and budget) are written. For how
    index actions over the training split are evaluated on another split, see
    :class:`agents.sb3.SB3Agent`.

    Args:
        config: the agent and its training settings.
        env_kwargs: arguments of the environment (``catalog``, ``user``...); the split and turns
            come from ``config``.
        final_path: the model's ``.zip``.
        device: torch device of the model.
        tensorboard_log: SB3's TensorBoard folder (``None``: no logs).
        resume: continue the run in ``final_path``'s folder: a finished one (``final_path``
            exists) is loaded as it is; an unfinished one continues from ``last.zip``.
        hooks: progress (one step per environment step), news and stop requests (default: silent).

    Returns:
        The model as an :class:`~agents.base.Agent`, acting on the training split's images, and the
        run's interaction budget (``None`` for a finished model saved before budgets were counted).

    Raises:
        DependencyNotInstalled: stable-baselines3 is not installed.
        TrainingInterrupted: a stop request (``last.zip`` was written).
        ConfigurationError: not an SB3 agent, bad hyper-parameters, or (``resume``) no readable
            model to resume.
    """
    from agents.sb3 import SB3Agent, load_model, make_model, make_training_env
    from agents.sb3_checkpoints import (
        LAST_MODEL,
        LAST_REPLAY,
        BudgetCallback,
        load_replay_buffer,
        read_last_state,
        vec_env_budget,
    )  # fmt: skip

    final_path = Path(final_path)
    checkpoint_dir = final_path.parent
    final_state = final_path.with_suffix(".json")
    hooks = hooks or TrainingHooks()
    agent = config.agent
    if config.budget_calls is not None and config.budget_calls < 1:
        raise ConfigurationError(f"budget_calls must be >= 1 simulator calls or None, got {config.budget_calls!r}")
    env = make_training_env(agent, {**env_kwargs, "split": config.train_split}, n_envs=config.n_envs, seed=config.seed,
                            max_turns=config.train_turns)  # fmt: skip
    hyperparameters = dict(config.hyperparameters)
    log_dir = None if tensorboard_log is None else str(tensorboard_log)
    try:
        train_catalog = env.get_attr("catalog")[0]
        if resume and final_path.exists():
            model = load_model(agent, final_path, env, device=str(device), **hyperparameters)
            budget = InteractionBudget.from_dict(_read_state(final_state)["budget"]) if final_state.exists() else None
            spent = "budget unknown" if budget is None else budget.describe()
            hooks.say(f"resumed from {final_path}: training finished ({spent})")
            return SB3Agent(model, agent, action_catalog=train_catalog), budget
        spent_before = InteractionBudget()
        last = checkpoint_dir / LAST_MODEL
        if resume:
            if not last.exists():
                raise ConfigurationError(
                    f"--resume: neither a finished model {str(final_path)!r} nor a checkpoint {str(last)!r}"
                )
            state = read_last_state(checkpoint_dir)
            model = load_model(agent, last, env, device=str(device), **hyperparameters)
            if state["replay_buffer"]:
                load_replay_buffer(model.replay_buffer, checkpoint_dir / LAST_REPLAY)
            model.tensorboard_log = log_dir
            model.num_timesteps = state["timesteps"]  # on-policy: the interrupted rollout is collected again
            spent_before = state["budget"]
            hooks.say(f"resumed from {last}: {model.num_timesteps:,} steps, {spent_before.describe()}")
        else:
            model = make_model(agent, env, **{"seed": config.seed, "device": str(device), "tensorboard_log": log_dir,
                                              **hyperparameters})  # fmt: skip
        kind = "query vector" if agent in SB3_QUERY_AGENTS else f"image index (Discrete({train_catalog.num_images}))"
        until = "" if config.budget_calls is None else f" or {config.budget_calls:,} simulator calls"
        hooks.say(
            f"training {agent} ({type(model).__name__}, action: {kind}) for {config.total_timesteps:,} steps{until} ..."
        )
        bar = hooks.bar(config.total_timesteps, model.num_timesteps, f"{agent} (SB3)")
        callback = BudgetCallback(
            vec_env_budget(env), spent_before, checkpoint_dir, budget_calls=config.budget_calls,
            checkpoint_every=config.checkpoint_every_steps, snapshot_calls=config.snapshot_calls, progress=bar,
            stop_requested=hooks.stop_requested,
        )  # fmt: skip
        remaining = config.total_timesteps - model.num_timesteps
        budget_left = config.budget_calls is None or spent_before.simulator_calls < config.budget_calls
        if remaining > 0 and budget_left:
            model.learn(remaining, callback=callback, tb_log_name=agent, reset_num_timesteps=not resume)
        bar.close()
        if callback.stopped_by_request:
            raise TrainingInterrupted(last, 1, int(model.num_timesteps))
        budget = callback.spent()
        with atomic_path(final_path, keep_suffix=True) as temporary:  # SB3's save keeps a .zip suffix
            model.save(temporary)
        stopped_by = "budget" if callback.reached_budget else "timesteps"
        atomic_write_json(
            final_state, {"timesteps": int(model.num_timesteps), "budget": budget.as_dict(), "stopped_by": stopped_by}
        )
        hooks.say(f"{agent}: {model.num_timesteps:,} steps, {budget.describe()}")
    finally:
        env.close()
    return SB3Agent(model, agent, action_catalog=train_catalog), budget


def _read_state(path: Path) -> dict[str, Any]:
    return read_json_object(path, "SB3 run state")


def _training_envs(num_envs: int, split: str, turns: int, env_kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """The native vector env a trainer plays in (target exposed for the loss), and its unwrapped form."""
    envs = gym.make_vec(
        "DialogRetrieval-v0", num_envs=num_envs, split=split, max_turns=turns, expose_target=True,
        vectorization_mode="vector_entry_point", **env_kwargs,
    )  # fmt: skip
    return envs, (envs.unwrapped if hasattr(envs, "unwrapped") else envs)


def _report_iteration(
    hooks: TrainingHooks,
    bar: ProgressBar,
    name: str,
    iteration: int,
    metrics: Mapping[str, float],
    budget: InteractionBudget | None,
    budget_step: int,
) -> None:
    """Advance a stage's bar; log its metrics (``train/{name}_{key}`` at ``iteration``), budget at ``budget_step``."""
    bar.update(1)
    bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
    if hooks.scalar is None:
        return
    for key, value in metrics.items():
        hooks.scalar(f"train/{name}_{key}", value, iteration)
    if budget is not None:
        for key, value in budget.as_dict().items():
            hooks.scalar(f"budget/{key}", value, budget_step)


# ---------------------------------------------------------------------------- the dialog retriever
@dataclass(frozen=True)
class RetrieverTrainingConfig:
    """Settings of the dialog retriever's training (:mod:`agents.dialog_retriever`).

    Attributes:
        seed: seed of the training dialogs and draws (iteration ``i`` depends on it and ``i`` only).
        train_split: catalogue split to train on.
        train_turns: turns per training dialog (``T + 1`` captions: the first image's and one per turn).
        batch_size: training dialogs per iteration ``B``.
        retriever_iterations: training iterations.
        retriever_lr: Adam learning rate.
        retriever_loss: ``"contrastive"`` or ``"triplet"``.
        retriever_hard_negatives: hard negatives per dialog and turn (contrastive loss).
        retriever_margin: triplet margin (triplet loss).
        retriever_selection: ``"greedy"`` or ``"split"``: the roll-in's selection and the evaluated agent's.
        retriever_history: ``"all"`` (every turn) or ``"last"`` (the newest turn only).
        checkpoint_every: iterations between two writes of ``last.pt``.
        snapshot_calls: interaction budgets at which a copy of the model is kept (see :class:`PaperTrainingConfig`).
    """

    seed: int = 1
    train_split: str = "train"
    train_turns: int = 5
    batch_size: int = 128
    retriever_iterations: int = 300
    retriever_lr: float = 1e-3
    retriever_loss: str = "contrastive"
    retriever_hard_negatives: int = 64
    retriever_margin: float = 1.0
    retriever_selection: str = "greedy"
    retriever_history: str = "all"
    checkpoint_every: int = 100
    snapshot_calls: tuple[int, ...] = ()


def retriever_iteration_calls(config: RetrieverTrainingConfig) -> int:
    """Simulator calls of one training iteration of the dialog retriever: ``B (T + 1)`` captions, no look-ahead."""
    return config.batch_size * (config.train_turns + 1)


def train_retriever_agent(
    config: RetrieverTrainingConfig,
    env_kwargs: Mapping[str, Any],
    checkpoint_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    resumed: Mapping[str, Any] | None = None,
    run_settings: Mapping[str, Any] | None = None,
    hooks: TrainingHooks | None = None,
) -> tuple[DialogRetriever, InteractionBudget | None]:
    """Train the dialog retriever with checkpoints in ``checkpoint_dir`` (``last.pt``, ``final.pt``).

    The checkpoints have the paper's agent's layout (:data:`TRAINING_KEYS`; stage ``"pretrain"``
    while training, ``"done"`` at the end, no ``"base"``) and ``"agent": "dialog-retriever"``.
    Iteration ``i`` draws only from the seed and ``i``, so a run resumed from ``last.pt`` reaches the
    numbers of an uninterrupted one; a finished run given more iterations continues. The
    interaction budget (captions of the simulator; no look-ahead) is counted, logged
    (``budget/...``), kept in every checkpoint and snapshots are taken at ``snapshot_calls``.

    Args:
        config: the training's settings.
        env_kwargs: arguments of the training environments (``catalog``, ``user``, ``user_kwargs``...).
        checkpoint_dir: where ``last.pt`` and ``final.pt`` are written.
        device: where the model trains.
        resumed: the checked ``last.pt`` of an interrupted run (:func:`read_training_checkpoint`).
        run_settings: what the run was started with, kept as ``"args"``.
        hooks: progress, news, metrics and stop requests.

    Returns:
        The trained model and the run's interaction budget (``None`` if unknown).

    Raises:
        TrainingInterrupted: a stop request (``last.pt`` was written).
        ConfigurationError: ``resumed`` does not fit this catalogue, user or model.
    """
    checkpoint_dir = Path(checkpoint_dir)
    hooks = hooks or TrainingHooks()
    envs, train_env = _training_envs(config.batch_size, config.train_split, config.train_turns, env_kwargs)
    vocabulary_words = train_env.vocabulary.words
    model_config = DialogRetrieverConfig(image_dim=train_env.catalog.dim, vocab_size=len(train_env.vocabulary))
    model = DialogRetriever(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.retriever_lr)
    iteration = 0
    spent_before: InteractionBudget | None = InteractionBudget()
    last = checkpoint_dir / LAST_CHECKPOINT
    if resumed is not None:
        if resumed.get("agent") != "dialog-retriever":
            raise ConfigurationError(f"--resume: {str(last)!r} is not a checkpoint of the dialog retriever")
        check_checkpoint_fits(resumed, last, model_config.image_dim, vocabulary_words)
        load_weights(model, resumed["model"], last, "model")
        load_weights(optimizer, resumed["optimizer"], last, "optimizer")
        iteration = resumed["iteration"]
        spent_before = InteractionBudget.from_dict(resumed["budget"]) if "budget" in resumed else None
        hooks.say(f"resumed from {last}: iteration {iteration}")
    snapshots = SnapshotIndex(checkpoint_dir, config.snapshot_calls, ".pt")
    counted_from = train_env.model.budget()

    def spent() -> InteractionBudget | None:
        return None if spent_before is None else spent_before + (train_env.model.budget() - counted_from)

    def checkpoint(next_iteration: int, stage: str, path: Path = last) -> None:
        budget = spent()
        save_checkpoint(path, {
            "agent": "dialog-retriever", "stage": stage, "iteration": next_iteration,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "base": None,
            "model_config": dataclasses.asdict(model_config), "vocabulary": vocabulary_words,
            "args": dict(run_settings or {}), "results": {},
            **({} if budget is None else {"budget": budget.as_dict()}),
        })  # fmt: skip

    bar = hooks.bar(config.retriever_iterations, iteration, "dialog retriever")

    def after_iteration(i: int, metrics: dict[str, float]) -> None:
        budget = spent()
        _report_iteration(hooks, bar, "retriever", i, metrics, budget, i + 1)
        if budget is not None:
            for calls in snapshots.due(budget):
                checkpoint(i + 1, "pretrain", snapshots.model_path(calls))
                snapshots.record(calls, budget, stage="pretrain", iteration=i + 1)
        if hooks.stop_requested is not None and hooks.stop_requested():
            checkpoint(i + 1, "pretrain")
            raise TrainingInterrupted(last, 1, i + 1)
        if (i + 1) % config.checkpoint_every == 0:
            checkpoint(i + 1, "pretrain")

    try:
        train_retriever(
            model, train_env, config.retriever_iterations, optimizer, seed=config.seed, start_iteration=iteration,
            loss=config.retriever_loss, hard_negatives=config.retriever_hard_negatives,
            margin=config.retriever_margin, selection=config.retriever_selection, history=config.retriever_history,
            device=device, on_iteration=after_iteration,
        )  # fmt: skip
        bar.close()
        checkpoint(config.retriever_iterations, "done")
        checkpoint(config.retriever_iterations, "done", checkpoint_dir / FINAL_CHECKPOINT)
    finally:
        envs.close()
    return model.eval(), spent()
