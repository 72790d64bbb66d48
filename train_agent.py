"""Train an agent on DialogRetrieval-v0 and evaluate it on the test split, per turn.

    python train_agent.py                       # the paper's agent: stage 1, stage 2, evaluation
    python train_agent.py --agent dialog-retriever   # our dialog retriever (agents/dialog_retriever.py)
    python train_agent.py --agent random        # the random reference (no training)
    python train_agent.py --agent ppo           # a Stable-Baselines3 baseline (ppo, a2c, dqn, maskable-ppo,
                                                # recurrent-ppo on the image index; ppo-query, sac-query,
                                                # td3-query, recurrent-ppo-query on a query vector)
    python train_agent.py --agent attribute-oracle   # the attribute oracle (no training)
    python train_agent.py --run-name mine --resume   # continue an interrupted run

Writes ``runs/NAME/``: ``config.json``, ``checkpoints/`` (``last.pt`` written atomically during
training, ``stage1.pt`` (the paper's agent), ``final.pt``; SB3 agents: ``last.zip`` every ``--checkpoint-every-steps``,
``final.zip``; ``snapshots/`` at the ``--snapshot-calls`` budgets), ``metrics.json`` (per-turn
metrics with 95% bootstrap confidence intervals, and each trained agent's interaction budget:
simulator calls, split into dialog turns and look-ahead calls) and TensorBoard logs
(``tensorboard --logdir runs``; ``budget/*`` is the interaction budget). Ctrl-C saves a
checkpoint and exits; ``--resume`` continues from the last checkpoint (the paper's agent and the
dialog retriever: with the same numbers; SB3 agents: with the same budget and settings, not the same digits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch

import dialog_env
from agents.base import Agent
from agents.baselines import RandomAgent
from agents.checkpoints import load_checkpoint  # noqa: F401 - re-exported: tests read a run's checkpoints with it
from agents.dialog_manager import DialogManagerAgent, resolve_device
from agents.dialog_retriever import HISTORIES, LOSSES, SELECTIONS, DialogRetrieverAgent
from agents.distributed import DialogShard, end_process, join_process_group, leave_process_group, torchrun_world_size
from agents.evaluation import EpisodeSet, evaluate, format_turn_table, summarize
from agents.registry import SB3_AGENTS, describe
from agents.training import (
    LAST_CHECKPOINT,
    RETRIEVER_TRAINING_ARGS,
    SB3_FINAL_MODEL,
    SB3_LAST_MODEL,
    PaperTrainingConfig,
    RetrieverTrainingConfig,
    SB3TrainingConfig,
    SettingChange,
    StageEvaluation,
    TrainingHooks,
    TrainingInterrupted,
    is_finished,
    prepare_torch,
    read_training_checkpoint,
    remove_interrupted_writes,
    resume_changes,
    stop_on_sigint,
    torch_threads_for,
    train_paper_agent,
    train_retriever_agent,
    train_sb3_agent,
)
from dialog_env.ann import check_knn_settings
from dialog_env.cli import dataclass_parser
from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError, DependencyNotInstalled, DialogEnvError
from dialog_env.io import atomic_write_json
from dialog_env.rank_table import set_build_progress
from dialog_env.runs import RunFolder, check_folder_name, check_parent_folder

#: The largest seed (NumPy's legacy seeding and TensorBoard-friendly logs take 32-bit seeds).
MAX_SEED = 2**32 - 1
#: Options about how a command was invoked, not about its results (left out of ``metrics.json``).
INVOCATION_ARGS = ("resume", "allow_changed_args", "progress", "rank_table")
#: ``--rank-table`` values and the environments' ``rank_table`` option each stands for.
RANK_TABLE_CHOICES = {"auto": "auto", "on": True, "off": False}


@dataclass
class Args:
    """The options of ``train_agent.py`` (each field is a ``--flag``; its docstring, the help)."""

    agent: str = "paper"
    """agent to train and evaluate: paper (stage 1 then stage 2); dialog-retriever (ours: a belief over the catalogue
    from every turn, contrastive training); random or attribute-oracle (no training); or a
    Stable-Baselines3 baseline: ppo, a2c, dqn, maskable-ppo, recurrent-ppo (action: image index) or ppo-query,
    sac-query, td3-query, recurrent-ppo-query (action: query vector)"""
    run_name: str | None = None
    """run folder under --runs-dir (default: AGENT-sSEED)"""
    runs_dir: str = "runs"
    """where run folders go"""
    seed: int = PaperTrainingConfig.seed
    """seed of the training dialogs, the model's initialisation and the agent"""
    device: str = "auto"
    """torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:1..."""
    torch_threads: int = 0
    """torch CPU threads; 0: automatic (1 for the SB3 agents, whose small networks run about 3x faster on one
    thread here; torch's default, one per core, for the others)"""
    catalog: str | None = None
    """HDF5 catalogue (default: the embedded synthetic Shoes-like catalogue)"""
    train_split: str = PaperTrainingConfig.train_split
    """catalogue split to train on"""
    eval_split: str = "test"
    """catalogue split to evaluate on"""
    user: str = "rule"
    """user simulator: rule, relative-attribute, captioner (the neural relative captioner; give its checkpoint
    with --user-kwargs) or corpus (real shoppers' captions; give the caption file: '{"captions": PATH}')"""
    user_kwargs: str | None = None
    """keyword arguments of the user simulator as a JSON object, e.g. '{"checkpoint": "runs/captioner/best.pt"}'"""
    max_turns: int = 10
    """turns of the evaluation dialogs"""
    train_turns: int = PaperTrainingConfig.train_turns
    """turns of the training dialogs (5 in the paper), for the paper's agent and the SB3 agents"""
    batch_size: int = PaperTrainingConfig.batch_size
    """training dialogs per iteration (128 in the paper)"""
    pretrain_iterations: int = PaperTrainingConfig.pretrain_iterations
    """stage 1 (supervised pre-training) iterations"""
    pretrain_lr: float = PaperTrainingConfig.pretrain_lr
    """stage 1 Adam learning rate"""
    margin: float = PaperTrainingConfig.margin
    """stage 1 triplet margin"""
    improve_iterations: int = PaperTrainingConfig.improve_iterations
    """stage 2 (model-based policy improvement) iterations; 0 skips stage 2"""
    improve_lr: float = PaperTrainingConfig.improve_lr
    """stage 2 Adam learning rate"""
    top_k: int = PaperTrainingConfig.top_k
    """stage 2 candidates looked ahead per turn"""
    tau: float = PaperTrainingConfig.tau
    """stage 2 softmax temperature"""
    num_negatives: int = PaperTrainingConfig.num_negatives
    """stage 2 random negatives in the softmax"""
    eval_episodes: int = 1000
    """evaluation episodes (the same targets and first images for every agent)"""
    eval_seed: int = 2018
    """seed of the evaluation episodes"""
    eval_random: bool = True
    """also evaluate the random agent on the same episodes, for reference"""
    eval_patience: int | None = None
    """evaluation shopper leaves after this many turns in a row without progress (default: never); reported as
    "shopper left" beside success"""
    eval_accept_rank: int | None = None
    """evaluation shopper accepts a shown image whose target rank is at most this (default: only the target); reported
    as "target or accepted alternative", never as success"""
    knn: str = "exact"
    """how the paper's agent finds the image nearest its query when evaluated: exact (a chunked scan of the embedded
    catalogue), faiss-flat, faiss-ivf or faiss-hnsw (FAISS, pip install "dialog-retrieval-env[faiss]"; approximate
    but fast on catalogues of a million images); its ranking of the target stays exact"""
    knn_options: str | None = None
    """settings of the FAISS index as a JSON object (keyword arguments of dialog_env.ann.make_knn_index), e.g.
    '{"nprobe": 32}'"""
    retriever_iterations: int = RetrieverTrainingConfig.retriever_iterations
    """dialog retriever: training iterations (--batch-size dialogs of --train-turns turns each)"""
    retriever_lr: float = RetrieverTrainingConfig.retriever_lr
    """dialog retriever: Adam learning rate"""
    retriever_loss: str = RetrieverTrainingConfig.retriever_loss
    """dialog retriever: contrastive (in-batch and hard negatives) or triplet (a margin against one random image)"""
    retriever_hard_negatives: int = RetrieverTrainingConfig.retriever_hard_negatives
    """dialog retriever: hard negatives (highest-scoring other images) per dialog and turn, contrastive loss"""
    retriever_margin: float = RetrieverTrainingConfig.retriever_margin
    """dialog retriever: margin of the triplet loss"""
    retriever_selection: str = RetrieverTrainingConfig.retriever_selection
    """dialog retriever: greedy (the best-scoring unseen image) or split (the unseen image nearest the belief's
    mean), in training and evaluation"""
    retriever_history: str = RetrieverTrainingConfig.retriever_history
    """dialog retriever: all (the belief sums every turn) or last (the newest turn only: the ablation)"""
    total_timesteps: int = SB3TrainingConfig.total_timesteps
    """SB3 agents: environment steps of training (the default takes 1-3 minutes per agent on 2 CPU cores)"""
    n_envs: int = SB3TrainingConfig.n_envs
    """SB3 agents: dialogs stepped together (one native vector environment)"""
    budget_calls: int | None = None
    """SB3 agents: stop training once the user simulator has written this many captions (the interaction budget),
    or at --total-timesteps, whichever comes first (the paper's agent's budget follows from its iterations)"""
    sb3_hyperparameters: str | None = None
    """SB3 agents: hyper-parameters over the project's defaults (agents/sb3.py MODEL_SPECS) as a JSON object, e.g.
    '{"learning_rate": 0.0001, "n_steps": 64}'"""
    checkpoint_every_steps: int = SB3TrainingConfig.checkpoint_every_steps
    """SB3 agents: environment steps between mid-run checkpoints (last.zip; 0: none)"""
    snapshot_calls: list[int] = dataclasses.field(default_factory=list)
    """interaction budgets (simulator calls, look-ahead included) at which a copy of the model is kept in
    checkpoints/snapshots/ (for learning curves)"""
    checkpoint_every: int = PaperTrainingConfig.checkpoint_every
    """iterations between checkpoints"""
    resume: bool = False
    """continue the run from its last checkpoint (refused if training arguments differ from the run's, except a larger
    iteration budget); a finished run says so and exits"""
    allow_changed_args: bool = False
    """with --resume: continue even though training arguments differ from the run's (its results then mix settings)"""
    progress: bool = True
    """show progress bars"""
    rank_table: str = "auto"
    """exact rank tables for the ranks of shown catalogue images (dialog_env.rank_table; speed only, never a number):
    auto (when a split's table takes at most 256 MiB: the default catalogue's splits, 200 + 43 MB, built in seconds),
    on, off"""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    """Command-line options from :class:`Args` (``--flag-name``; booleans as ``--x/--no-x``), validated."""
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    try:
        validate_args(args)
    except ConfigurationError as error:
        parser.error(str(error))
    return args


def validate_args(args: Args) -> None:
    """Check every option before anything is built or written.

    Raises:
        ConfigurationError: listing each bad option, what was given and what is allowed.
    """
    problems = []
    try:
        describe(args.agent, "--agent")  # the registry's message lists every agent by kind
    except ConfigurationError as error:
        problems.append(str(error))
    for name in ("max_turns", "train_turns", "batch_size", "eval_episodes", "checkpoint_every", "top_k",
                 "num_negatives", "total_timesteps", "n_envs"):  # fmt: skip
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("pretrain_iterations", "improve_iterations", "torch_threads", "checkpoint_every_steps",
                 "retriever_iterations", "retriever_hard_negatives"):  # fmt: skip
        if getattr(args, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("seed", "eval_seed"):
        if not 0 <= getattr(args, name) <= MAX_SEED:
            problems.append(
                f"--{name.replace('_', '-')} must be in 0..{MAX_SEED} (2^32 - 1), got {getattr(args, name)}"
            )
    for name in ("pretrain_lr", "improve_lr", "tau", "retriever_lr"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            problems.append(f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(args, name)}")
    if args.rank_table not in RANK_TABLE_CHOICES:
        problems.append(f"--rank-table must be one of {', '.join(RANK_TABLE_CHOICES)}, got {args.rank_table!r}")
    for name in ("margin", "retriever_margin"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            problems.append(f"--{name.replace('_', '-')} must be a finite number >= 0, got {getattr(args, name)}")
    for name, allowed in (("retriever_loss", LOSSES), ("retriever_selection", SELECTIONS),
                          ("retriever_history", HISTORIES)):  # fmt: skip
        if getattr(args, name) not in allowed:
            flag = f"--{name.replace('_', '-')}"
            problems.append(f"{flag} must be one of {', '.join(allowed)}, got {getattr(args, name)!r}")
    retriever_defaults = Args()
    changed_retriever = [name for name in ("retriever_iterations", *RETRIEVER_TRAINING_ARGS)
                         if getattr(args, name) != getattr(retriever_defaults, name)]  # fmt: skip
    if changed_retriever and args.agent != "dialog-retriever":
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in changed_retriever)
        problems.append(f"{flags} apply to the dialog retriever (--agent dialog-retriever), not {args.agent!r}")
    for name in ("budget_calls", "eval_patience", "eval_accept_rank"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.budget_calls is not None and args.agent not in SB3_AGENTS:
        problems.append(
            f"--budget-calls applies to the SB3 agents; the budget of {args.agent!r} follows from its iterations "
            "(agents.training.paper_iteration_calls)"
        )
    if args.sb3_hyperparameters is not None and args.agent not in SB3_AGENTS:
        problems.append(f"--sb3-hyperparameters applies to the SB3 agents, not {args.agent!r}")
    if any(calls < 1 for calls in args.snapshot_calls):
        problems.append(f"--snapshot-calls must all be >= 1, got {args.snapshot_calls}")
    if (args.knn != "exact" or args.knn_options) and args.agent != "paper":
        problems.append(f"--knn and --knn-options apply to the paper's agent, not {args.agent!r}")
    if args.allow_changed_args and not args.resume:
        problems.append("--allow-changed-args only applies with --resume")
    try:
        world_size = torchrun_world_size()
    except ConfigurationError as error:
        problems.append(str(error))
        world_size = 1
    if world_size > 1 and args.agent != "paper":
        problems.append(f"torchrun ({world_size} processes) trains the paper's agent only, not {args.agent!r}: start "
                        "other agents with python train_agent.py")  # fmt: skip
    elif world_size > 1 and args.batch_size % world_size:
        problems.append(f"--batch-size {args.batch_size} must be a multiple of the {world_size} torchrun processes "
                        "(each plays an equal share of every iteration's dialogs)")  # fmt: skip
    for check in (
        lambda: user_kwargs_of(args),
        lambda: check_knn_settings(args.knn, _json_object(args.knn_options, "--knn-options")),
        lambda: sb3_hyperparameters_of(args),
        lambda: resolve_device(args.device),
        lambda: check_parent_folder(args.runs_dir, "--runs-dir"),
        lambda: args.run_name is None or check_folder_name(args.run_name),
    ):
        try:
            check()
        except (ConfigurationError, DependencyNotInstalled) as error:
            problems.append(str(error))
    if problems:
        raise ConfigurationError("; ".join(problems))


def user_kwargs_of(args: Args) -> dict[str, Any]:
    """``--user-kwargs`` parsed (an empty dict when not given).

    Raises:
        ConfigurationError: not a JSON object.
    """
    return _json_object(args.user_kwargs, "--user-kwargs")


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{option} must be a JSON object, got {text!r}: {error}") from error
    if not isinstance(value, dict):
        raise ConfigurationError(f"{option} must be a JSON object ({{...}}), got {type(value).__name__}: {text!r}")
    return value


def sb3_hyperparameters_of(args: Args) -> dict[str, Any]:
    """``--sb3-hyperparameters`` parsed (an empty dict when not given).

    Raises:
        ConfigurationError: not a JSON object.
    """
    return _json_object(args.sb3_hyperparameters, "--sb3-hyperparameters")


# ---------------------------------------------------------------------------- the run
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, and turn a stop request or a project error into an exit status (130, 2)."""
    args = parse_args(argv)
    try:
        return run(args)
    except TrainingInterrupted as interrupted:
        print(f"\ninterrupted: {interrupted}; continue with --resume", file=sys.stderr)
        return 130
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: Args) -> int:
    """Train and evaluate as ``args`` say, in the locked run folder; returns the exit status.

    Under ``torchrun`` every process runs this: each trains its share of the dialogs
    (:mod:`agents.distributed`), and process 0 alone holds the run folder, prints, logs, writes
    the checkpoints and metrics and evaluates.
    """
    validate_args(args)
    start_time = time.perf_counter()
    run_name = args.run_name or f"{args.agent}-s{args.seed}"
    run_dir = Path(args.runs_dir) / check_folder_name(run_name)
    shard, device = join_process_group(resolve_device(args.device))
    # The rank tables' bars follow --progress (and only process 0 shows bars).
    previous_progress = set_build_progress(None if args.progress and shard.is_main else False)
    try:
        with contextlib.ExitStack() as held:
            return _run_in(held, run_dir, args, run_name, start_time, shard, device)
    finally:
        set_build_progress(previous_progress)
        leave_process_group()


def _run_in(
    held: contextlib.ExitStack,
    run_dir: Path,
    args: Args,
    run_name: str,
    start_time: float,
    shard: DialogShard,
    device: torch.device,
) -> int:
    """The run, its folder locked in ``held`` (by process 0 of a torchrun job)."""
    with shard.agreed_start():  # all processes start, or all stop with the error of the one that did not
        folder = held.enter_context(RunFolder(run_dir, "train_agent.py")) if shard.is_main else None
        status, resumed, setting = _start_run(folder, run_dir, args, run_name, shard)
    if status is not None or setting is None:
        return status or 0
    return _train_and_evaluate(run_dir, args, run_name, start_time, resumed, setting, shard, device)


def _start_run(
    folder: RunFolder | None, run_dir: Path, args: Args, run_name: str, shard: DialogShard
) -> tuple[int | None, dict[str, Any] | None, _EvaluationSetting | None]:
    """Check what is to be resumed, read the catalogue and the user, and (process 0) write ``config.json``.

    Returns:
        ``(status, resumed, setting)``: an exit status when there is nothing to do (else ``None``),
        the checked ``last.pt`` of the paper's agent to resume from (``None``: a new run), and the
        run's :func:`_evaluation_setting` (``None`` when there is nothing to do).
    """
    checkpoint_dir = run_dir / "checkpoints"
    last = checkpoint_dir / LAST_CHECKPOINT
    if not args.resume and any(
        (checkpoint_dir / name).exists() for name in (LAST_CHECKPOINT, SB3_FINAL_MODEL, SB3_LAST_MODEL)
    ):
        raise ConfigurationError(
            f"run folder {str(run_dir)!r} already holds a checkpoint: pass --resume to continue it, or choose "
            f"another --run-name"
        )
    resumed: dict[str, Any] | None = None
    if args.resume:
        if args.agent in ("paper", "dialog-retriever"):
            if not last.exists():
                raise ConfigurationError(f"--resume: no checkpoint at {str(last)!r}")
            resumed = read_training_checkpoint(last)
            previous_args = resumed["args"]
        else:
            final, sb3_last = checkpoint_dir / SB3_FINAL_MODEL, checkpoint_dir / SB3_LAST_MODEL
            if args.agent in SB3_AGENTS and not final.exists() and not sb3_last.exists():
                raise ConfigurationError(
                    f"--resume: no SB3 model at {str(final)!r} or checkpoint at {str(sb3_last)!r} (the run stopped "
                    f"before its first checkpoint; start it again without --resume)"
                )
            previous_args = _previous_args(run_dir)
        changed = refuse_changed_args(args, previous_args, resumed, warn=shard.is_main)
        if resumed is not None and args.agent == "dialog-retriever":
            trained = resumed["stage"] == "done" and resumed["iteration"] >= args.retriever_iterations
        elif resumed is not None:
            trained = is_finished(resumed, args.improve_iterations)
        else:
            trained = args.agent not in SB3_AGENTS or (checkpoint_dir / SB3_FINAL_MODEL).exists()
        if (run_dir / "metrics.json").is_file() and trained and not changed:
            if shard.is_main:
                print(f"run {run_name} is complete: its results are in {run_dir / 'metrics.json'} (delete that file "
                      f"to evaluate it again)")  # fmt: skip
            return 0, None, None
        if folder is not None:
            remove_interrupted_writes(checkpoint_dir)  # the folder's lock: no live process is writing there
    prepare_torch(args.seed, torch_threads_for(args.agent, args.torch_threads))
    setting = _evaluation_setting(args)  # read before config.json: a refused start leaves no folder
    if folder is not None:
        atomic_write_json(run_dir / "config.json", {
            "args": dataclasses.asdict(args), "world_size": shard.world_size,
            "command": " ".join([*_launcher(shard), "train_agent.py", *sys.argv[1:]]),
        })  # fmt: skip
        folder.started()
    return None, resumed, setting


#: ``(env_kwargs, eval_kwargs, episodes, eval split's images)`` of a run.
_EvaluationSetting = tuple[dict[str, Any], dict[str, Any], EpisodeSet, int]


def _evaluation_setting(args: Args) -> _EvaluationSetting:
    """``(env_kwargs, eval_kwargs, episodes, eval split's images)`` of the run (the catalogue is read)."""
    env_kwargs = {"catalog": args.catalog, "user": args.user, "user_kwargs": user_kwargs_of(args),
                  "rank_table": RANK_TABLE_CHOICES[args.rank_table]}  # fmt: skip
    # Only the split's size is read: no rank table for the probe (the evaluation builds or shares one).
    eval_envs_probe = dialog_env.DialogRetrievalEnv(split=args.eval_split, **{**env_kwargs, "rank_table": False})
    num_images = eval_envs_probe.catalog.num_images
    episodes = EpisodeSet.draw(num_images, args.eval_episodes, args.eval_seed)
    eval_kwargs = {**env_kwargs, "split": args.eval_split, "patience": args.eval_patience,
                   "accept_rank": args.eval_accept_rank}  # fmt: skip
    return env_kwargs, eval_kwargs, episodes, num_images


def _launcher(shard: DialogShard) -> list[str]:
    """How ``config.json`` records the command's start: ``python``, or torchrun with its process count."""
    return ["python"] if not shard.distributed else ["torchrun", f"--nproc_per_node={shard.world_size}"]


def _train_and_evaluate(
    run_dir: Path,
    args: Args,
    run_name: str,
    start_time: float,
    resumed: dict[str, Any] | None,
    setting: _EvaluationSetting,
    shard: DialogShard,
    device: torch.device,
) -> int:
    """Train (every process its share) and evaluate (process 0), writing ``metrics.json``."""
    checkpoint_dir = run_dir / "checkpoints"
    env_kwargs, eval_kwargs, episodes, eval_images = setting
    processes = f" processes={shard.world_size}" if shard.distributed else ""
    if shard.is_main:
        print(
            f"run {run_name}: agent={args.agent} device={device}{processes} train split={args.train_split} "
            f"eval split={args.eval_split} ({eval_images} images, {len(episodes)} episodes)",
            flush=True,
        )

    writer = _summary_writer(run_dir / "tensorboard") if shard.is_main else None
    hooks = TrainingHooks(
        log=_say if shard.is_main else None,
        progress=_progress_bar if args.progress and shard.is_main else None,
        scalar=None if writer is None else writer.add_scalar,
    )
    results: dict[str, Any] = {}
    agents_to_eval: list[Agent] = []
    budgets: dict[str, dict[str, int] | None] = {}  # agent -> its training's interaction budget
    if args.agent == "paper":
        knn = {"knn": args.knn, "knn_options": _json_object(args.knn_options, "--knn-options")}
        evaluation = StageEvaluation(episodes, eval_kwargs, max_turns=args.max_turns, seed=args.eval_seed, **knn)
        with stop_on_sigint(lambda notice: _warn(f"\n{notice}")) as stop_requested:
            final_model, results, budget = train_paper_agent(
                _settings(PaperTrainingConfig, args), env_kwargs, checkpoint_dir, device=device, evaluation=evaluation,
                resumed=resumed, run_settings=dataclasses.asdict(args),
                hooks=dataclasses.replace(hooks, stop_requested=stop_requested), shard=shard,
            )  # fmt: skip
        if not shard.is_main:
            return 0  # process 0 evaluates and writes the metrics
        final_name = "paper-stage2" if args.improve_iterations else "paper-stage1"
        agents_to_eval.append(DialogManagerAgent(final_model, device, name=final_name, **knn))
        budgets[final_name] = None if budget is None else budget.as_dict()
    elif args.agent == "dialog-retriever":
        with stop_on_sigint(lambda notice: _warn(f"\n{notice}")) as stop_requested:
            retriever, budget = train_retriever_agent(
                _settings(RetrieverTrainingConfig, args), env_kwargs, checkpoint_dir, device=device, resumed=resumed,
                run_settings=dataclasses.asdict(args), hooks=dataclasses.replace(hooks, stop_requested=stop_requested),
            )  # fmt: skip
        agents_to_eval.append(DialogRetrieverAgent(retriever, device, selection=args.retriever_selection,
                                                   history=args.retriever_history))  # fmt: skip
        budgets["dialog-retriever"] = None if budget is None else budget.as_dict()
    elif args.agent in SB3_AGENTS:
        config = _settings(SB3TrainingConfig, args, hyperparameters=sb3_hyperparameters_of(args))
        with stop_on_sigint(lambda notice: _warn(f"\n{notice}")) as stop_requested:
            sb3_agent, budget = train_sb3_agent(
                config, env_kwargs, checkpoint_dir / SB3_FINAL_MODEL, device=device,
                tensorboard_log=run_dir / "tensorboard", resume=args.resume,
                hooks=dataclasses.replace(hooks, stop_requested=stop_requested),
            )  # fmt: skip
        agents_to_eval.append(sb3_agent)
        budgets[sb3_agent.name] = None if budget is None else budget.as_dict()
    elif args.agent == "attribute-oracle":
        from agents.oracle import AttributeOracleAgent  # imported here: only this agent needs it

        agents_to_eval.append(AttributeOracleAgent())
    if args.agent == "random" or args.eval_random:
        agents_to_eval.append(RandomAgent(seed=args.seed))

    for agent in agents_to_eval:
        if agent.name in results:
            continue
        print(f"evaluating {agent.name} on {len(episodes)} episodes ...", flush=True)
        result = evaluate(agent, episodes, eval_kwargs, max_turns=args.max_turns, seed=args.eval_seed)
        results[agent.name] = summarize(result, seed=args.eval_seed)
        if agent.name in budgets:
            results[agent.name]["interaction_budget"] = budgets[agent.name]
        elif agent.name in ("random", "attribute-oracle"):
            results[agent.name]["interaction_budget"] = InteractionBudget().as_dict()  # nothing trained
    for name, summary in results.items():
        _log_summary(writer, name, summary)
        print(
            f"\n{name}: per-turn results on the {args.eval_split} split ({summary['episodes']} episodes, mean [95% CI])"
        )
        print(format_turn_table(summary))
        spent = summary.get("interaction_budget")
        print(f"training budget: {'unknown' if spent is None else InteractionBudget.from_dict(spent).describe()}")
    if writer is not None:
        writer.close()
    metrics = {
        "run": run_name,
        "args": {key: value for key, value in dataclasses.asdict(args).items() if key not in INVOCATION_ARGS},
        "episodes": {"count": len(episodes), "seed": episodes.seed, "split": args.eval_split},
        "results": results,
        "versions": _versions(),
        "wall_seconds": time.perf_counter() - start_time,
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    print(f"\nwrote {run_dir / 'metrics.json'} ({metrics['wall_seconds']:.0f} s)")
    return 0


def _previous_args(run_dir: Path) -> dict[str, Any] | None:
    """The arguments a run folder was started with (``config.json``), or ``None`` without one."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())["args"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"--resume: {str(path)!r} is not a config.json of train_agent.py: {error}") from error
    if not isinstance(previous, dict):
        raise ConfigurationError(f"--resume: {str(path)!r} holds no arguments")
    return previous


def refuse_changed_args(
    args: Args, previous: dict[str, Any] | None, checkpoint: dict[str, Any] | None, warn: bool = True
) -> list[str]:
    """Refuse to resume with options that change training or evaluation, listing each difference.

    What may change is :func:`agents.training.resume_changes`'s rule: iteration budgets may grow,
    stage 1's only while stage 1 runs; device, threads, progress... may change freely.
    ``--allow-changed-args`` turns the refusal into a warning (printed when ``warn``: process 0
    of a torchrun job says it for all).

    Returns:
        The differences that ``--allow-changed-args`` let through (none when nothing changed).

    Raises:
        ConfigurationError: a difference, without ``--allow-changed-args``.
    """
    differences = [_as_option(change) for change in resume_changes(previous, dataclasses.asdict(args), checkpoint)]
    if not differences:
        return []
    listing = "; ".join(differences)
    if args.allow_changed_args:
        if warn:
            _warn(f"warning: resuming with changed arguments (--allow-changed-args): {listing}")
        return differences
    raise ConfigurationError(
        f"--resume with arguments that differ from the run's: {listing}. Resume with the run's own arguments "
        f"(see its config.json), start another --run-name, or pass --allow-changed-args to continue anyway"
    )


def _as_option(change: SettingChange) -> str:
    """A changed setting as its command-line option: ``--seed: 1 -> 7``."""
    flag = f"--{change.key.replace('_', '-')}"
    if change.reason is None:
        return f"{flag}: {change.before!r} -> {change.now!r}"
    return f"{flag}: {change.before} -> {change.now} ({change.reason})"


Settings = TypeVar("Settings")


def _settings(kind: type[Settings], args: Args, **others: Any) -> Settings:
    """The library's settings dataclass ``kind`` filled from the options of the same names, then ``others``."""
    names = [field.name for field in dataclasses.fields(kind) if field.name not in others]  # type: ignore[arg-type]
    return kind(**{name: getattr(args, name) for name in names}, **others)


def _say(message: str) -> None:
    print(message, flush=True)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_bar(total: int, initial: int, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, mininterval=2.0, file=sys.stdout)


def _summary_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training if it is broken
        print("warning: tensorboard is not installed; no TensorBoard logs (pip install tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(folder))


def _log_summary(writer: Any, name: str, summary: dict[str, Any]) -> None:
    if writer is None:
        return
    for row in summary["turns"]:
        for metric, value in row.items():
            if metric != "turn":
                writer.add_scalar(f"eval/{name}/{metric}", value["mean"], row["turn"])


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
        "gymnasium": gym.__version__, "dialog_env": dialog_env.__version__,
    }  # fmt: skip


if __name__ == "__main__":
    end_process(main())
