"""Train an agent on DialogRetrieval-v0 and evaluate it on the test split, per turn.

    python train_agent.py                       # the paper's agent: stage 1, stage 2, evaluation
    python train_agent.py --agent random        # the random reference (no training)
    python train_agent.py --agent ppo           # a Stable-Baselines3 baseline (ppo, a2c, dqn on the
                                                # image index; ppo-query, sac-query, td3-query on a query vector)
    python train_agent.py --agent attribute-oracle   # the attribute oracle (no training)
    python train_agent.py --run-name mine --resume   # continue an interrupted run

Writes ``runs/NAME/``: ``config.json``, ``checkpoints/`` (``last.pt`` written atomically during
training, ``stage1.pt``, ``final.pt``; SB3 agents: ``final.zip``), ``metrics.json`` (per-turn metrics with 95% bootstrap
confidence intervals) and TensorBoard logs (``tensorboard --logdir runs``). Ctrl-C saves a
checkpoint and exits; ``--resume`` continues from the last checkpoint with the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

import dialog_env
from agents.base import Agent
from agents.baselines import RandomAgent
from agents.checkpoints import load_checkpoint, load_weights, save_checkpoint
from agents.dialog_manager import DialogManager, DialogManagerAgent, DialogManagerConfig, pretrain, resolve_device
from agents.evaluation import EpisodeSet, evaluate, format_turn_table, summarize
from agents.policy_improvement import improve
from dialog_env.cli import dataclass_parser
from dialog_env.errors import ConfigurationError, DialogEnvError
from dialog_env.io import atomic_write_json
from dialog_env.runs import RunFolder, check_folder_name, check_parent_folder

#: Agents without Stable-Baselines3: the paper's agent and the random reference.
CORE_AGENTS = ("paper", "random")
#: Agents that are only evaluated (no training).
EVAL_ONLY_AGENTS = ("attribute-oracle",)
#: Stable-Baselines3 agents (``agents.sb3.SB3_AGENTS``; named here so that the other agents run
#: without the optional stable-baselines3): catalogue-index actions, then query-vector actions.
SB3_AGENTS = ("ppo", "a2c", "dqn", "ppo-query", "sac-query", "td3-query")
AGENTS = CORE_AGENTS + EVAL_ONLY_AGENTS + SB3_AGENTS
#: The largest seed (NumPy's legacy seeding and TensorBoard-friendly logs take 32-bit seeds).
MAX_SEED = 2**32 - 1
#: Options that change what a run trains or how it is evaluated: ``--resume`` refuses a change to
#: any of them (without ``--allow-changed-args``), since the results would mix two settings.
TRAINING_ARGS = (
    "agent", "seed", "catalog", "train_split", "user", "user_kwargs", "train_turns", "batch_size", "pretrain_lr", "margin",
    "improve_lr", "top_k", "tau", "num_negatives", "total_timesteps", "n_envs", "eval_split", "max_turns",
    "eval_episodes", "eval_seed",
)  # fmt: skip
#: Iteration budgets a resumed run may raise (stage 1's only while stage 1 is still running).
BUDGET_ARGS = ("pretrain_iterations", "improve_iterations")
#: Options about how a command was invoked, not about its results (left out of ``metrics.json``).
INVOCATION_ARGS = ("resume", "allow_changed_args", "progress")
#: The stages a checkpoint of the paper's agent can be in.
STAGES = ("pretrain", "improve", "done")


@dataclass
class Args:
    agent: str = "paper"
    """agent to train and evaluate: paper (stage 1 then stage 2); random or attribute-oracle (no training); or a
    Stable-Baselines3 baseline: ppo, a2c, dqn (action: image index) or ppo-query, sac-query, td3-query (action: query vector)"""
    run_name: str | None = None
    """run folder under --runs-dir (default: AGENT-sSEED)"""
    runs_dir: str = "runs"
    """where run folders go"""
    seed: int = 1
    """seed of the training dialogs, the model's initialisation and the agent"""
    device: str = "auto"
    """torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:1..."""
    torch_threads: int = 0
    """torch CPU threads; 0: automatic (1 for the SB3 agents, whose small networks run about 3x faster on one
    thread here; torch's default, one per core, for the others)"""
    catalog: str | None = None
    """HDF5 catalogue (default: the embedded synthetic Shoes-like catalogue)"""
    train_split: str = "train"
    """catalogue split to train on"""
    eval_split: str = "test"
    """catalogue split to evaluate on"""
    user: str = "rule"
    """user simulator: rule, relative-attribute, or captioner (the neural relative captioner; give its checkpoint
    with --user-kwargs)"""
    user_kwargs: str | None = None
    """keyword arguments of the user simulator as a JSON object, e.g. '{"checkpoint": "runs/captioner/best.pt"}'"""
    max_turns: int = 10
    """turns of the evaluation dialogs"""
    train_turns: int = 5
    """turns of the training dialogs (5 in the paper), for the paper's agent and the SB3 agents"""
    batch_size: int = 128
    """training dialogs per iteration (128 in the paper)"""
    pretrain_iterations: int = 600
    """stage 1 (supervised pre-training) iterations"""
    pretrain_lr: float = 1e-3
    """stage 1 Adam learning rate"""
    margin: float = 0.1
    """stage 1 triplet margin"""
    improve_iterations: int = 100
    """stage 2 (model-based policy improvement) iterations; 0 skips stage 2"""
    improve_lr: float = 1e-4
    """stage 2 Adam learning rate"""
    top_k: int = 4
    """stage 2 candidates looked ahead per turn"""
    tau: float = 0.2
    """stage 2 softmax temperature"""
    num_negatives: int = 5
    """stage 2 random negatives in the softmax"""
    eval_episodes: int = 1000
    """evaluation episodes (the same targets and first images for every agent)"""
    eval_seed: int = 2018
    """seed of the evaluation episodes"""
    eval_random: bool = True
    """also evaluate the random agent on the same episodes, for reference"""
    total_timesteps: int = 50_000
    """SB3 agents: environment steps of training (the default takes 1-3 minutes per agent on 2 CPU cores)"""
    n_envs: int = 4
    """SB3 agents: training environments stepped together"""
    checkpoint_every: int = 100
    """iterations between checkpoints"""
    resume: bool = False
    """continue the run from its last checkpoint (refused if training arguments differ from the run's, except a larger
    iteration budget); a finished run says so and exits"""
    allow_changed_args: bool = False
    """with --resume: continue even though training arguments differ from the run's (its results then mix settings)"""
    progress: bool = True
    """show progress bars"""


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
    if args.agent not in AGENTS:
        problems.append(
            f"--agent must be one of {list(CORE_AGENTS)}, {list(EVAL_ONLY_AGENTS)} (evaluation only) or a "
            f"Stable-Baselines3 agent {list(SB3_AGENTS)}, got {args.agent!r}"
        )
    for name in ("max_turns", "train_turns", "batch_size", "eval_episodes", "checkpoint_every", "top_k", "num_negatives",
                 "total_timesteps", "n_envs"):  # fmt: skip
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("pretrain_iterations", "improve_iterations", "torch_threads"):
        if getattr(args, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("seed", "eval_seed"):
        if not 0 <= getattr(args, name) <= MAX_SEED:
            problems.append(f"--{name.replace('_', '-')} must be in 0..{MAX_SEED} (2^32 - 1), got {getattr(args, name)}")
    for name in ("pretrain_lr", "improve_lr", "tau"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            problems.append(f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(args, name)}")
    if not (math.isfinite(args.margin) and args.margin >= 0):
        problems.append(f"--margin must be a finite number >= 0, got {args.margin}")
    if args.allow_changed_args and not args.resume:
        problems.append("--allow-changed-args only applies with --resume")
    for check in (
        lambda: user_kwargs_of(args),
        lambda: resolve_device(args.device),
        lambda: check_parent_folder(args.runs_dir, "--runs-dir"),
        lambda: args.run_name is None or check_folder_name(args.run_name),
    ):
        try:
            check()
        except ConfigurationError as error:
            problems.append(str(error))
    if problems:
        raise ConfigurationError("; ".join(problems))


def user_kwargs_of(args: Args) -> dict[str, Any]:
    """``--user-kwargs`` parsed (an empty dict when not given).

    Raises:
        ConfigurationError: not a JSON object.
    """
    if not args.user_kwargs:
        return {}
    try:
        value = json.loads(args.user_kwargs)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"--user-kwargs must be a JSON object, got {args.user_kwargs!r}: {error}") from error
    if not isinstance(value, dict):
        raise ConfigurationError(f"--user-kwargs must be a JSON object ({{...}}), got {type(value).__name__}: {args.user_kwargs!r}")
    return value


class _Interrupted(Exception):
    """Raised after a checkpoint was saved on Ctrl-C."""


# ---------------------------------------------------------------------------- the run
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except _Interrupted as interrupted:
        print(f"\ninterrupted: {interrupted}; continue with --resume", file=sys.stderr)
        return 130
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: Args) -> int:
    """Train and evaluate as ``args`` say, in the locked run folder; returns the exit status."""
    validate_args(args)
    start_time = time.perf_counter()
    run_name = args.run_name or f"{args.agent}-s{args.seed}"
    run_dir = Path(args.runs_dir) / check_folder_name(run_name)
    with RunFolder(run_dir, "train_agent.py") as folder:
        return _run_in(folder, args, run_name, start_time)


def _run_in(folder: RunFolder, args: Args, run_name: str, start_time: float) -> int:
    run_dir = folder.path
    checkpoint_dir = run_dir / "checkpoints"
    last = checkpoint_dir / "last.pt"
    if not args.resume and any((checkpoint_dir / name).exists() for name in ("last.pt", "final.zip")):
        raise ConfigurationError(
            f"run folder {str(run_dir)!r} already holds a checkpoint: pass --resume to continue it, or choose "
            f"another --run-name"
        )
    resumed: dict[str, Any] | None = None
    if args.resume:
        if args.agent == "paper":
            if not last.exists():
                raise ConfigurationError(f"--resume: no checkpoint at {str(last)!r}")
            resumed = read_training_checkpoint(last)
            previous_args = resumed["args"]
        else:
            if args.agent in SB3_AGENTS and not (checkpoint_dir / "final.zip").exists():
                raise ConfigurationError(
                    f"--resume: no finished SB3 model at {str(checkpoint_dir / 'final.zip')!r} (SB3 training is not "
                    f"checkpointed midway; start the run again without --resume)"
                )
            previous_args = _previous_args(run_dir)
        changed = refuse_changed_args(args, previous_args, resumed)
        trained = resumed is None or (resumed["stage"] == "done" and resumed["iteration"] >= args.improve_iterations)
        if (run_dir / "metrics.json").is_file() and trained and not changed:
            print(f"run {run_name} is complete: its results are in {run_dir / 'metrics.json'} (delete that file to "
                  f"evaluate it again)")  # fmt: skip
            return 0
        # Temporary files of writes cut short by a crash (kill -9, power loss): the checkpoints
        # they were replacing are intact, so they only take space. The folder's lock guarantees
        # that no live process is writing them.
        if checkpoint_dir.is_dir():
            for stale in [*checkpoint_dir.glob(".*.tmp-*"), *checkpoint_dir.glob(".tmp-*")]:
                stale.unlink(missing_ok=True)

    threads = args.torch_threads or (1 if args.agent in SB3_AGENTS else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # nothing here draws from it; pinned for third-party code
    device = resolve_device(args.device)
    env_kwargs = {"catalog": args.catalog, "user": args.user, "user_kwargs": user_kwargs_of(args)}
    eval_envs_probe = dialog_env.DialogRetrievalEnv(split=args.eval_split, **env_kwargs)
    episodes = EpisodeSet.draw(eval_envs_probe.catalog.num_images, args.eval_episodes, args.eval_seed)
    eval_kwargs = {**env_kwargs, "split": args.eval_split}
    atomic_write_json(run_dir / "config.json", {"args": dataclasses.asdict(args), "command": " ".join(["python", "train_agent.py", *sys.argv[1:]])})
    folder.started()
    print(
        f"run {run_name}: agent={args.agent} device={device} train split={args.train_split} "
        f"eval split={args.eval_split} ({eval_envs_probe.catalog.num_images} images, {len(episodes)} episodes)",
        flush=True,
    )

    writer = _summary_writer(run_dir / "tensorboard")
    results: dict[str, Any] = {}
    agents_to_eval: list[Agent] = []
    if args.agent == "paper":
        final_model, results = train_paper_agent(args, env_kwargs, checkpoint_dir, device, writer, episodes, eval_kwargs, resumed)
        agents_to_eval.append(DialogManagerAgent(final_model, device, name="paper-stage2" if args.improve_iterations else "paper-stage1"))
    elif args.agent in SB3_AGENTS:
        agents_to_eval.append(train_sb3_agent(args, env_kwargs, run_dir, device))
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
    for name, summary in results.items():
        _log_summary(writer, name, summary)
        print(f"\n{name}: per-turn results on the {args.eval_split} split ({summary['episodes']} episodes, mean [95% CI])")
        print(format_turn_table(summary))
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


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint of the paper's agent (``last.pt``), with every key ``--resume`` needs checked.

    Raises:
        ConfigurationError: unreadable, not a checkpoint, a missing key, or an unknown stage.
    """
    payload = load_checkpoint(path)
    needed = {"stage": str, "iteration": int, "optimizer": dict, "base": (dict, type(None)), "args": dict, "results": dict}
    for key, kind in needed.items():
        if key not in payload:
            raise ConfigurationError(f"checkpoint {str(path)!r} lacks the key {key!r}, which --resume needs (it holds {sorted(payload)})")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise ConfigurationError(f"checkpoint {str(path)!r}: {key!r} is a {type(payload[key]).__name__}")
    if payload["stage"] not in STAGES:
        raise ConfigurationError(f"checkpoint {str(path)!r} is at stage {payload['stage']!r}; this code knows the stages {list(STAGES)}")
    if payload["iteration"] < 0:
        raise ConfigurationError(f"checkpoint {str(path)!r} is at iteration {payload['iteration']}, expected >= 0")
    if payload["stage"] != "pretrain" and payload["base"] is None:
        raise ConfigurationError(f"checkpoint {str(path)!r} is at stage {payload['stage']!r} but holds no stage-1 model ('base')")
    return payload


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


def refuse_changed_args(args: Args, previous: dict[str, Any] | None, checkpoint: dict[str, Any] | None) -> list[str]:
    """Refuse to resume with options that change training or evaluation, listing each difference.

    Iteration budgets may grow (:data:`BUDGET_ARGS`), stage 1's only while stage 1 runs; options
    outside :data:`TRAINING_ARGS` (device, threads, progress...) may change freely.
    ``--allow-changed-args`` turns the refusal into a warning.

    Returns:
        The differences that ``--allow-changed-args`` let through (none when nothing changed).

    Raises:
        ConfigurationError: a difference, without ``--allow-changed-args``.
    """
    if previous is None:
        return []
    current = dataclasses.asdict(args)
    differences = []
    for key in TRAINING_ARGS:
        before, now = previous.get(key), current[key]
        if key == "user_kwargs":  # compare the objects, not their spelling
            before, now = (json.loads(v) if v else {} for v in (before, now))
        if before != now:
            differences.append(f"--{key.replace('_', '-')}: {previous.get(key)!r} -> {current[key]!r}")
    stage = checkpoint["stage"] if checkpoint else None
    iteration = checkpoint["iteration"] if checkpoint else 0
    for key in BUDGET_ARGS:
        before, now = previous.get(key), current[key]
        if before is None or before == now:
            continue
        flag = f"--{key.replace('_', '-')}"
        if now < before:
            differences.append(f"{flag}: {before} -> {now} (a budget may grow, not shrink)")
        elif key == "pretrain_iterations" and stage not in (None, "pretrain"):
            differences.append(f"{flag}: {before} -> {now} (stage 1 already finished after {before} iterations)")
        elif key == "pretrain_iterations" and now < iteration:
            differences.append(f"{flag}: {before} -> {now} (the checkpoint is at iteration {iteration})")
    if not differences:
        return []
    listing = "; ".join(differences)
    if args.allow_changed_args:
        print(f"warning: resuming with changed arguments (--allow-changed-args): {listing}", file=sys.stderr, flush=True)
        return differences
    raise ConfigurationError(
        f"--resume with arguments that differ from the run's: {listing}. Resume with the run's own arguments "
        f"(see its config.json), start another --run-name, or pass --allow-changed-args to continue anyway"
    )


def train_paper_agent(
    args: Args,
    env_kwargs: dict[str, Any],
    checkpoint_dir: Path,
    device: torch.device,
    writer: Any,
    episodes: EpisodeSet,
    eval_kwargs: dict[str, Any],
    resumed: dict[str, Any] | None = None,
) -> tuple[DialogManager, dict[str, Any]]:
    """Stage 1 then stage 2, with checkpoints; returns the final model and the stage-1 evaluation.

    ``resumed`` is the checked ``last.pt`` of an interrupted run (:func:`read_training_checkpoint`):
    training continues from its stage and iteration, with its optimizer state.
    """
    envs = gym.make_vec(
        "DialogRetrieval-v0", num_envs=args.batch_size, split=args.train_split, max_turns=args.train_turns,
        expose_target=True, vectorization_mode="vector_entry_point", **env_kwargs,
    )  # fmt: skip
    train_env = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    vocabulary_words = train_env.vocabulary.words
    config = DialogManagerConfig(image_dim=train_env.catalog.dim, vocab_size=len(train_env.vocabulary))
    model = DialogManager(config).to(device)
    base: DialogManager | None = None
    stage, iteration = "pretrain", 0
    results: dict[str, Any] = {}
    optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=args.pretrain_lr)

    last = checkpoint_dir / "last.pt"
    if resumed is not None:
        payload = load_checkpoint(last, config.image_dim, vocabulary_words)  # checks the fit to this catalogue and user
        stage, iteration, results = payload["stage"], payload["iteration"], payload["results"]
        load_weights(model, payload["model"], last, "model")
        if stage in ("improve", "done"):
            base = DialogManager(config).to(device)
            load_weights(base, payload["base"], last, "base")
            # Stage 2 trains all but the image encoder: its optimizer holds fewer parameter groups' state.
            optimizer = _stage2_optimizer(model, args.improve_lr)
        load_weights(optimizer, payload["optimizer"], last, "optimizer")
        if stage == "done" and iteration < args.improve_iterations:
            stage = "improve"  # a larger stage-2 budget: continue stage 2 where it ended
        print(f"resumed from {last}: stage {payload['stage']}, iteration {iteration}", flush=True)

    def checkpoint(next_iteration: int, path: Path = last) -> None:
        save_checkpoint(path, {
            "stage": stage, "iteration": next_iteration,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "base": None if base is None else base.state_dict(), "model_config": dataclasses.asdict(config),
            "vocabulary": vocabulary_words, "args": dataclasses.asdict(args), "results": results,
        })  # fmt: skip

    stop_requested = {"flag": False}

    def request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        if stop_requested["flag"]:
            raise KeyboardInterrupt
        stop_requested["flag"] = True
        print("\nCtrl-C: stopping after this iteration (press again to abort without saving)", file=sys.stderr, flush=True)

    def after_iteration(name: str, stage_number: int, bar: Any) -> Any:
        """The per-iteration callback of a stage: log, honour Ctrl-C, checkpoint periodically."""

        def callback(i: int, metrics: dict[str, float]) -> None:
            _after_iteration(writer, bar, name, i, metrics)
            if stop_requested["flag"]:
                checkpoint(i + 1)
                raise _Interrupted(f"checkpoint saved after stage {stage_number} iteration {i + 1} in {last}")
            if (i + 1) % args.checkpoint_every == 0:
                checkpoint(i + 1)

        return callback

    previous_handler = signal.signal(signal.SIGINT, request_stop)
    try:
        if stage == "pretrain":
            bar = _progress(args, args.pretrain_iterations, iteration, "stage 1 (pre-training)")

            pretrain(model, train_env, args.pretrain_iterations, optimizer, seed=args.seed, start_iteration=iteration,
                     margin=args.margin, device=device, on_iteration=after_iteration("stage1", 1, bar))  # fmt: skip
            bar.close()
            print("evaluating paper-stage1 ...", flush=True)
            summary = summarize(
                evaluate(DialogManagerAgent(model, device, "paper-stage1"), episodes, eval_kwargs, max_turns=args.max_turns, seed=args.eval_seed),
                seed=args.eval_seed,
            )
            results["paper-stage1"] = summary
            base = copy.deepcopy(model)
            stage, iteration = "improve", 0
            optimizer = _stage2_optimizer(model, args.improve_lr)
            checkpoint(0, checkpoint_dir / "stage1.pt")
            checkpoint(0)
        if stage == "improve" and args.improve_iterations > 0:
            assert base is not None
            bar = _progress(args, args.improve_iterations, iteration, "stage 2 (policy improvement)")

            improve(model, base, train_env, args.improve_iterations, optimizer, seed=args.seed, start_iteration=iteration,
                    top_k=args.top_k, tau=args.tau, num_negatives=args.num_negatives, device=device,
                    on_iteration=after_iteration("stage2", 2, bar))  # fmt: skip
            bar.close()
        stage = "done"
        checkpoint(args.improve_iterations)
        checkpoint(args.improve_iterations, checkpoint_dir / "final.pt")
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        envs.close()
    return model, results


def train_sb3_agent(args: Args, env_kwargs: dict[str, Any], run_dir: Path, device: torch.device) -> Agent:
    """Train (or, with ``--resume``, load) a Stable-Baselines3 agent; returns its evaluation adapter.

    The model trains on ``--train-split`` with ``--n-envs`` environments of ``--train-turns`` turns
    for ``--total-timesteps`` steps, logs to the run's ``tensorboard/`` folder and is saved as
    ``checkpoints/final.zip``. SB3 training is not checkpointed midway: ``--resume`` reuses a
    finished model (and re-evaluates it) and refuses a run without one. For how index actions
    over the training split are evaluated on the test split, see :class:`agents.sb3.SB3Agent`.
    """
    from agents.sb3 import QUERY_AGENTS, ProgressCallback, SB3Agent, load_model, make_model, make_training_env

    final = run_dir / "checkpoints" / "final.zip"
    env = make_training_env(args.agent, {**env_kwargs, "split": args.train_split}, n_envs=args.n_envs, seed=args.seed,
                            max_turns=args.train_turns)  # fmt: skip
    train_catalog = env.get_attr("catalog")[0]
    if args.resume:  # the run's final.zip exists: checked before the run started
        model = load_model(args.agent, final, env, device=str(device))
        print(f"resumed from {final}: training finished, evaluating", flush=True)
    else:
        model = make_model(args.agent, env, seed=args.seed, device=str(device), tensorboard_log=str(run_dir / "tensorboard"))
        kind = "query vector (QueryAction)" if args.agent in QUERY_AGENTS else f"image index (Discrete({train_catalog.num_images}))"
        print(f"training {args.agent} ({type(model).__name__}, action: {kind}) for {args.total_timesteps} steps ...", flush=True)
        bar = _progress(args, args.total_timesteps, 0, f"{args.agent} (SB3)")
        model.learn(args.total_timesteps, callback=ProgressCallback(bar), tb_log_name=args.agent)
        bar.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # SB3 keeps a .zip suffix
        model.save(temporary)
        os.replace(temporary, final)  # atomic: a crash never leaves a half-written model
    env.close()
    return SB3Agent(model, args.agent, action_catalog=train_catalog)


def _stage2_optimizer(model: DialogManager, lr: float) -> torch.optim.Optimizer:
    """Adam over everything but the (frozen) image encoder."""
    for parameter in model.image_encoder.parameters():
        parameter.requires_grad_(False)
    return torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("image_encoder.")], lr=lr)


def _progress(args: Args, total: int, initial: int, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, disable=not args.progress, mininterval=2.0, file=sys.stdout)


def _after_iteration(writer: Any, bar: Any, stage: str, iteration: int, metrics: dict[str, float]) -> None:
    bar.update(1)
    bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
    if writer is not None:
        for key, value in metrics.items():
            writer.add_scalar(f"train/{stage}_{key}", value, iteration)


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
    raise SystemExit(main())
