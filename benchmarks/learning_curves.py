"""Learning curves at equal interaction budgets: every learned agent against simulator calls.

Every learned agent is trained with each of ``--seeds`` up to ``--max-calls`` *simulator calls*
(captions of the user simulator, look-ahead included: :class:`~dialog_env.dynamics.InteractionBudget`),
keeping a snapshot of its model at each of ``--checkpoints`` (:mod:`agents.snapshots`). Every
snapshot is evaluated on the same fixed test episodes (:func:`agents.evaluation.evaluate`), and
the runs of one agent are aggregated across seeds with ``rliable``: the interquartile mean (IQM)
and the mean, each with a 95% stratified-bootstrap interval over the runs. Writes
``learning_curves.md`` (the fixed-budget scoreboard at ``--tracks`` and the curves' table),
``learning_curves.json`` (every number, per run and aggregated, with the budgets actually spent)
and ``learning_curves.png``.

How each agent spends its budget:

- ``paper``: stage 1 (supervised pre-training, ``--pretrain-iterations``) then stage 2 (policy
  improvement with look-ahead) for as many iterations as the budget allows
  (:func:`agents.training.paper_iteration_calls`): a snapshot before the end of stage 1 is a
  stage-1 model.
- ``dialog-retriever`` (ours, :mod:`agents.dialog_retriever`): its contrastive training for as
  many iterations of ``--batch-size`` dialogs as the budget allows
  (:func:`agents.training.retriever_iteration_calls`; no look-ahead).
- Stable-Baselines3 agents: ``--n-envs`` dialogs on the native vector environment, with the
  hyper-parameters of :data:`TUNED` over the project's defaults (``agents/sb3.py``), until the
  budget (:class:`agents.training.SB3TrainingConfig` ``budget_calls``).

A snapshot is taken after the first iteration (vector step) that reaches its budget, so it may
hold up to one iteration more (the JSON records the exact figure).

**Long runs in parts.** ``--part-minutes`` bounds the training time of one invocation: when it is
spent, the run in progress writes its checkpoint and the command evaluates what is finished and
exits with status 3 ("run again to continue"). Finished runs and evaluated snapshots are reused
(``--runs-dir``), unfinished runs resume from their checkpoint, so repeating the command completes
the benchmark.

Intervals: with 3 seeds the stratified bootstrap resamples 3 runs, so the interval reflects the
spread of seeds; the per-run figures in the JSON also carry the 95% interval over test episodes.

Usage::

    python benchmarks/learning_curves.py                          # every agent, 3 seeds, up to 3M calls
    python benchmarks/learning_curves.py --agents paper ppo-query --max-calls 250000
    python benchmarks/learning_curves.py --quick                  # minutes: the pipeline on a tiny catalogue
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import RandomAgent
from agents.checkpoints import agent_from_checkpoint
from agents.dialog_manager import resolve_device
from agents.evaluation import EpisodeSet, evaluate, metric_values
from agents.registry import SB3_AGENTS, describe, is_sb3_agent
from agents.snapshots import read_snapshot_index
from agents.training import (
    LAST_CHECKPOINT,
    PaperTrainingConfig,
    RetrieverTrainingConfig,
    SB3TrainingConfig,
    TrainingHooks,
    TrainingInterrupted,
    final_model_path,
    paper_iteration_calls,
    prepare_torch,
    read_training_checkpoint,
    remove_interrupted_writes,
    retriever_iteration_calls,
    torch_threads_for,
    train_paper_agent,
    train_retriever_agent,
    train_sb3_agent,
)
from dialog_env.cli import dataclass_parser
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import ConfigurationError, DependencyNotInstalled, DialogEnvError
from dialog_env.io import atomic_write_json, read_json_object
from dialog_env.runs import RunFolder
from dialog_env.synthetic import make_synthetic_shoes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: Exit status of a part that ran out of ``--part-minutes`` (run the command again to continue).
EXIT_PART_DONE = 3
#: The learned agents of the curves (the paper's, the dialog retriever, every SB3 agent).
LEARNED_AGENTS = ("paper", "dialog-retriever", *SB3_AGENTS)
#: What the curves and the scoreboard report: (metric of :func:`metric_values`, turn).
CURVE_METRICS = (("success", 5), ("success", 10), ("shown_percentile", 5), ("ranking_percentile", 5))

#: Hyper-parameters of the SB3 agents over the project's defaults (``agents.sb3.MODEL_SPECS``) for
#: budgets of millions of steps on 64 dialogs: on-policy rollouts of 64 dialogs x 16 steps (1,024
#: transitions), off-policy warm-up of 5,000 steps. The small sweep at 250k calls (README scoreboard)
#: found only ppo-query's learning rate to matter: 1e-3 beats 3e-4; the 3M track runs it as the variant
#: ``ppo-query@lr1e-3``, and these defaults stay as they are so that the committed runs keep their fingerprints.
TUNED: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4},
    "maskable-ppo": {"n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4},
    "recurrent-ppo": {"n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4},
    "recurrent-ppo-query": {"n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4},
    "ppo-query": {"n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4},
    "a2c": {"n_steps": 8, "learning_rate": 7e-4},
    "dqn": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 5_000},
    "sac-query": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 5_000},
    "td3-query": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 5_000},
}


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    agents: list[str] = field(default_factory=lambda: list(LEARNED_AGENTS))
    """learned agents to train and evaluate; AGENT@LABEL is a variant of an SB3 agent with the --variants settings"""
    variants: str | None = None
    """hyper-parameters of variants as a JSON object, e.g. '{"ppo-query@lr1e-3": {"learning_rate": 0.001}}' (over
    TUNED's settings of the agent before the @): a sweep is a run of the curves over variants"""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """training seeds (one run per agent and seed)"""
    max_calls: int = 3_000_000
    """interaction budget of every run (simulator calls, look-ahead included)"""
    checkpoints: list[int] = field(
        default_factory=lambda: [25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 3_000_000]
    )
    """budgets at which every run is evaluated (those above --max-calls are dropped)"""
    tracks: list[int] = field(default_factory=lambda: [250_000, 3_000_000])
    """budgets of the fixed-budget scoreboard (each must be one of --checkpoints)"""
    n_envs: int = 64
    """SB3 agents: dialogs stepped together"""
    train_turns: int = 5
    """turns per training dialog"""
    pretrain_iterations: int = PaperTrainingConfig.pretrain_iterations
    """paper's agent: stage-1 iterations (stage 2 takes the rest of the budget)"""
    batch_size: int = PaperTrainingConfig.batch_size
    """paper's agent and dialog retriever: dialogs per iteration"""
    eval_episodes: int = 500
    """test episodes (the same for every agent and snapshot)"""
    eval_seed: int = 2018
    """seed of the test episodes and of the user's randomness in evaluation"""
    max_turns: int = 10
    """turns per evaluation dialog"""
    catalog: str | None = None
    """HDF5 catalogue (default: the embedded synthetic one)"""
    runs_dir: Path | None = None
    """where runs and evaluations are kept, reused by the next invocation (default: runs/curves-MAX_CALLS)"""
    part_minutes: float = 50.0
    """training minutes per invocation; then the run in progress is checkpointed and the command exits (status 3)"""
    previous: Path | None = None
    """a learning_curves.json written earlier (another session or machine): its runs made with the same settings are
    taken from it (not trained or evaluated again); the others run here"""
    bootstrap_reps: int = 2000
    """rliable's bootstrap resamples"""
    quick: bool = False
    """tiny settings for a smoke test (small catalogue, paper and ppo, two seeds, budgets of a few thousand calls)"""
    out: Path = RESULTS
    """folder for learning_curves.md/.json/.png"""


# ---------------------------------------------------------------------------- settings
def check_args(args: Args) -> None:
    """Refuse unknown agents, untrained ones, and budgets that do not fit together.

    Raises:
        ConfigurationError: listing each problem.
    """
    problems = []
    try:
        variants = variants_of(args)
    except ConfigurationError as error:
        problems.append(str(error))
        variants = {}
    for name in args.agents:
        agent = base_agent(name)
        try:
            describe(agent, "--agents")
        except ConfigurationError as error:
            problems.append(str(error))
            continue
        if "@" in name and (not is_sb3_agent(agent) or name not in variants):
            problems.append(f"--agents: variant {name!r} needs an SB3 agent before '@' and its settings in --variants")
        if agent not in LEARNED_AGENTS:
            problems.append(f"--agents: {agent!r} is not trained (the curves are for {list(LEARNED_AGENTS)})")
    if not args.seeds:
        problems.append("--seeds: give at least one seed")
    if args.max_calls < 1 or any(b < 1 for b in args.checkpoints):
        problems.append("--max-calls and --checkpoints must be >= 1")
    missing = [t for t in args.tracks if t not in args.checkpoints or t > args.max_calls]
    if missing:
        problems.append(f"--tracks {missing} must be among --checkpoints and <= --max-calls ({args.max_calls:,})")
    if args.part_minutes <= 0:
        problems.append(f"--part-minutes must be > 0, got {args.part_minutes}")
    if problems:
        raise ConfigurationError("; ".join(problems))


def base_agent(name: str) -> str:
    """The agent of a name of :attr:`Args.agents` (``"ppo-query@lr1e-3"`` -> ``"ppo-query"``)."""
    return name.split("@", 1)[0]


def variants_of(args: Args) -> dict[str, dict[str, Any]]:
    """``--variants`` parsed: variant name -> hyper-parameters.

    Raises:
        ConfigurationError: not a JSON object of objects.
    """
    if not args.variants:
        return {}
    try:
        variants = json.loads(args.variants)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"--variants must be a JSON object, got {args.variants!r}: {error}") from error
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigurationError(f"--variants must map names to objects of hyper-parameters, got {args.variants!r}")
    return variants


def hyperparameters_of(args: Args, name: str) -> dict[str, Any]:
    """The SB3 hyper-parameters of an agent or variant: :data:`TUNED`'s, then the variant's."""
    return {**TUNED.get(base_agent(name), {}), **variants_of(args).get(name, {})}


def run_fingerprint(args: Args, name: str, seed: int) -> dict[str, Any]:
    """Everything a run's evaluations depend on: two runs with equal fingerprints are interchangeable."""
    keys = ("max_calls", "n_envs", "train_turns", "pretrain_iterations", "batch_size", "eval_episodes", "eval_seed",
            "max_turns", "catalog")  # fmt: skip
    fingerprint = {key: getattr(args, key) for key in keys}
    fingerprint.update(agent=name, seed=seed, checkpoints=list(checkpoints_of(args)))
    if is_sb3_agent(base_agent(name)):
        fingerprint["hyperparameters"] = hyperparameters_of(args, name)
    return json.loads(json.dumps(fingerprint))


def previous_runs(args: Args) -> dict[tuple[str, int], dict[int, dict[str, Any]]]:
    """``(name, seed) -> evaluations`` of ``--previous``'s complete runs whose fingerprint matches this invocation's.

    Raises:
        ConfigurationError: ``--previous`` is not a learning-curves report.
    """
    if args.previous is None:
        return {}
    report = read_json_object(args.previous, "learning-curves report")
    runs, fingerprints = report.get("runs"), report.get("fingerprints")
    if not isinstance(runs, dict) or not isinstance(fingerprints, dict):
        raise ConfigurationError(f"{str(args.previous)!r} is not a learning_curves.json (no runs and fingerprints)")
    wanted = checkpoints_of(args)
    found = {}
    for name in args.agents:
        for seed in args.seeds:
            evaluations = runs.get(name, {}).get(str(seed), {})
            if fingerprints.get(name, {}).get(str(seed)) != run_fingerprint(args, name, seed):
                continue
            if all(str(calls) in evaluations for calls in wanted):
                found[(name, seed)] = {int(calls): value for calls, value in evaluations.items()}
    return found


def checkpoints_of(args: Args) -> tuple[int, ...]:
    """The evaluated budgets: ``--checkpoints`` up to ``--max-calls``, and ``--max-calls`` itself."""
    return tuple(sorted({b for b in args.checkpoints if b <= args.max_calls} | {args.max_calls}))


def paper_config(args: Args, seed: int) -> PaperTrainingConfig:
    """The paper's agent's settings: stage 1 as given, stage 2 for the rest of ``--max-calls``."""
    config = PaperTrainingConfig(
        seed=seed, batch_size=args.batch_size, train_turns=args.train_turns,
        pretrain_iterations=args.pretrain_iterations, snapshot_calls=checkpoints_of(args),
    )  # fmt: skip
    stage1, stage2 = paper_iteration_calls(config)
    pretrain = min(config.pretrain_iterations, math.ceil(args.max_calls / stage1))  # a budget inside stage 1
    improve = max(0, math.ceil((args.max_calls - stage1 * pretrain) / stage2))
    return dataclasses.replace(config, pretrain_iterations=pretrain, improve_iterations=improve)


def retriever_config(args: Args, seed: int) -> RetrieverTrainingConfig:
    """The dialog retriever's settings: ``--batch-size`` dialogs per iteration, iterations until ``--max-calls``."""
    config = RetrieverTrainingConfig(
        seed=seed, batch_size=args.batch_size, train_turns=args.train_turns, snapshot_calls=checkpoints_of(args)
    )
    iterations = math.ceil(args.max_calls / retriever_iteration_calls(config))
    return dataclasses.replace(config, retriever_iterations=iterations)


def sb3_config(args: Args, name: str, seed: int) -> SB3TrainingConfig:
    """An SB3 agent's (or variant's) settings: :func:`hyperparameters_of`, trained until ``--max-calls``."""
    return SB3TrainingConfig(
        base_agent(name), seed=seed, train_turns=args.train_turns, total_timesteps=args.max_calls, n_envs=args.n_envs,
        budget_calls=args.max_calls, checkpoint_every_steps=200_000, snapshot_calls=checkpoints_of(args),
        hyperparameters=hyperparameters_of(args, name),
    )  # fmt: skip


# ---------------------------------------------------------------------------- training
def _progress_bar(total: int, initial: int, description: str) -> Any:
    """A progress bar for runs of many minutes: refreshed at most every 30 s, so a log file stays short."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"  {description}", mininterval=30.0, file=sys.stdout)


class PartDone(Exception):
    """The invocation's training time is spent: a checkpoint was written; run the command again."""


class Curves:
    """Trains, evaluates and aggregates the runs of one invocation (see the module docstring)."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.runs_dir = Path(args.runs_dir) if args.runs_dir is not None else Path(f"runs/curves-{args.max_calls}")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + 60.0 * args.part_minutes
        self.catalog = args.catalog
        if args.quick:
            path = self.runs_dir / "quick-catalog.h5"
            if not path.exists():
                make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7).save(path)
            self.catalog = str(path)
        self.env_kwargs = {"catalog": self.catalog, "user": "rule", "user_kwargs": {}}
        probe = DialogRetrievalEnv(catalog=self.catalog, split="test")
        self.episodes = EpisodeSet.draw(probe.catalog.num_images, args.eval_episodes, args.eval_seed)
        self.eval_kwargs = {**self.env_kwargs, "split": "test"}

    def run_dir(self, name: str, seed: int) -> Path:
        """The run folder of agent or variant ``name`` with ``seed``."""
        return self.runs_dir / f"{name}-s{seed}"

    def train(self, name: str, seed: int) -> None:
        """Train one run to ``--max-calls`` unless it is finished; resume it if it was interrupted.

        Raises:
            PartDone: the invocation's training time ran out (the run wrote its checkpoint).
        """
        run_dir, agent = self.run_dir(name, seed), base_agent(name)
        checkpoint_dir = run_dir / "checkpoints"
        if final_model_path(checkpoint_dir, agent).exists():
            return
        if time.monotonic() >= self.deadline:
            raise PartDone(f"{run_dir.name} not started")
        hooks = TrainingHooks(log=lambda message: print(f"  {run_dir.name}: {message}", flush=True),
                              progress=_progress_bar,
                              stop_requested=lambda: time.monotonic() >= self.deadline)  # fmt: skip
        started = time.perf_counter()
        with RunFolder(run_dir, "learning_curves.py") as folder:
            folder.started()
            remove_interrupted_writes(checkpoint_dir)  # the folder's lock: no live process is writing there
            prepare_torch(seed, torch_threads_for(agent))
            device = resolve_device("auto")
            try:
                if is_sb3_agent(agent):
                    config = sb3_config(self.args, name, seed)
                    resume = (checkpoint_dir / "last.zip").exists()
                    train_sb3_agent(config, self.env_kwargs, final_model_path(checkpoint_dir, agent), device=device,
                                    tensorboard_log=run_dir / "tensorboard", resume=resume, hooks=hooks)  # fmt: skip
                else:
                    retriever = agent == "dialog-retriever"
                    config = retriever_config(self.args, seed) if retriever else paper_config(self.args, seed)
                    last = checkpoint_dir / LAST_CHECKPOINT
                    resumed = read_training_checkpoint(last) if last.exists() else None
                    settings = {"agent": agent, "catalog": self.catalog, **dataclasses.asdict(config)}
                    if resumed is not None and resumed["args"] != json.loads(json.dumps(settings)):
                        raise ConfigurationError(
                            f"{str(last)!r} was trained with other settings; remove {str(run_dir)!r} or choose "
                            "another --runs-dir"
                        )
                    train = train_retriever_agent if retriever else train_paper_agent
                    train(config, self.env_kwargs, checkpoint_dir, device=device, resumed=resumed,  # type: ignore[arg-type]
                          run_settings=settings, hooks=hooks)  # fmt: skip
            except TrainingInterrupted as interrupted:
                raise PartDone(f"{run_dir.name}: {interrupted}") from None
        print(f"  {run_dir.name}: trained in {time.perf_counter() - started:.0f} s", flush=True)

    # ------------------------------------------------------------------ evaluation
    def evaluate_snapshots(self, name: str, seed: int) -> dict[int, dict[str, Any]]:
        """Budget -> the evaluation of the run's snapshot at that budget (cached in the run folder)."""
        run_dir = self.run_dir(name, seed)
        checkpoint_dir = run_dir / "checkpoints"
        index = read_snapshot_index(checkpoint_dir)
        evaluations: dict[int, dict[str, Any]] = {}
        for calls in checkpoints_of(self.args):
            if calls not in index:
                continue
            cache = run_dir / "evaluations" / f"calls-{calls}.json"
            key = {"episodes": len(self.episodes), "episode_seed": self.episodes.seed,
                   "max_turns": self.args.max_turns, "snapshot": index[calls]}  # fmt: skip
            if cache.exists():
                cached = read_json_object(cache, "snapshot evaluation")
                if cached.get("key") == json.loads(json.dumps(key)):
                    evaluations[calls] = cached
                    continue
            model_path = checkpoint_dir / "snapshots" / index[calls]["file"]
            result = evaluate(self._load(name, model_path), self.episodes, self.eval_kwargs,
                              max_turns=self.args.max_turns, seed=self.args.eval_seed)  # fmt: skip
            evaluations[calls] = {"key": key, "budget": index[calls]["budget"], "metrics": _point_metrics(result)}
            atomic_write_json(cache, evaluations[calls])
        return evaluations

    def _load(self, name: str, path: Path) -> Any:
        agent = base_agent(name)
        if not is_sb3_agent(agent):
            return agent_from_checkpoint(path, name=name)[0]
        from agents.sb3 import SB3Agent, load_model, make_training_env

        env_kwargs = {**self.env_kwargs, "split": "train"}
        env = make_training_env(agent, env_kwargs, n_envs=1, max_turns=self.args.train_turns)
        try:
            with warnings.catch_warnings():  # a one-dialog env for the spaces: SB3 warns about rollout sizes
                warnings.simplefilter("ignore", UserWarning)
                model = load_model(agent, path, env, device="cpu", **hyperparameters_of(self.args, name))
            return SB3Agent(model, name, action_catalog=env.get_attr("catalog")[0])
        finally:
            env.close()

    def random_reference(self) -> dict[str, Any]:
        """The random agent on the same episodes (the level every learned agent must beat)."""
        result = evaluate(RandomAgent(seed=0), self.episodes, self.eval_kwargs, max_turns=self.args.max_turns,
                          seed=self.args.eval_seed)  # fmt: skip
        return _point_metrics(result)


def _point_metrics(result: Any) -> dict[str, dict[str, float]]:
    """``"<metric>@<turn>" -> {"mean", "low", "high"}`` (95% bootstrap over episodes) for :data:`CURVE_METRICS`."""
    values = metric_values(result)
    rng = np.random.default_rng(0)
    out = {}
    for metric, turn in CURVE_METRICS:
        if metric not in values or turn > values[metric].shape[1]:
            continue
        column = values[metric][:, turn - 1]
        means = column[rng.integers(column.size, size=(1000, column.size))].mean(axis=1)
        out[f"{metric}@{turn}"] = {
            "mean": float(column.mean()),
            "low": float(np.quantile(means, 0.025)),
            "high": float(np.quantile(means, 0.975)),
        }
    return out


# ---------------------------------------------------------------------------- aggregation (rliable)
def aggregate(per_seed: Sequence[float], reps: int, seed: int) -> dict[str, Any]:
    """IQM and mean over runs with rliable's 95% stratified-bootstrap intervals.

    Args:
        per_seed: one score per run (seed).
        reps: bootstrap resamples.
        seed: seed of the bootstrap.

    Raises:
        DependencyNotInstalled: rliable is missing (extra ``curves``).
    """
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as error:
        raise DependencyNotInstalled(
            f'the learning curves need rliable: pip install "dialog-retrieval-env[curves]" ({error})'
        ) from error
    scores = {"agent": np.asarray(per_seed, dtype=np.float64).reshape(-1, 1)}  # (runs, tasks = 1)
    if scores["agent"].shape[0] == 1:  # one run: no interval to estimate
        value = float(scores["agent"][0, 0])
        return {"iqm": value, "mean": value, "iqm_ci": [value, value], "mean_ci": [value, value], "runs": 1}

    def both(matrix: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(matrix), metrics.aggregate_mean(matrix)])

    with warnings.catch_warnings():  # rliable 1.2 hands arch the deprecated random_state: same numbers
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            scores, both, reps=reps, random_state=np.random.RandomState(seed)
        )  # stratified bootstrap over runs (one task)
    return {
        "iqm": float(point["agent"][0]), "mean": float(point["agent"][1]),
        "iqm_ci": [float(interval["agent"][0, 0]), float(interval["agent"][1, 0])],
        "mean_ci": [float(interval["agent"][0, 1]), float(interval["agent"][1, 1])],
        "runs": int(scores["agent"].shape[0]),
    }  # fmt: skip


def build_report(
    args: Args, runs: Mapping[str, Mapping[int, Mapping[int, Mapping[str, Any]]]], random: Mapping[str, Any]
) -> dict[str, Any]:
    """The aggregated curves: per agent, per budget, per metric (only budgets every seed reached)."""
    agents: dict[str, Any] = {}
    for agent, by_seed in runs.items():
        points = []
        for calls in checkpoints_of(args):
            evaluations = [by_seed[seed][calls] for seed in args.seeds if calls in by_seed.get(seed, {})]
            if len(evaluations) < len(args.seeds):
                continue  # not every seed is there yet: no aggregate
            point: dict[str, Any] = {
                "calls": calls,
                "spent": [e["budget"]["simulator_calls"] for e in evaluations],
                "lookahead_calls": [e["budget"]["lookahead_calls"] for e in evaluations],
            }
            for name in evaluations[0]["metrics"]:
                per_seed = [e["metrics"][name]["mean"] for e in evaluations]
                point[name] = {"per_seed": per_seed, **aggregate(per_seed, args.bootstrap_reps, args.eval_seed)}
            points.append(point)
        agents[agent] = points
    return {
        "agents": agents, "random": random, "claim2": judge_claim2(args, agents),
        "runs": {a: {str(s): v for s, v in r.items()} for a, r in runs.items()},
    }  # fmt: skip


def judge_claim2(args: Args, agents: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The paper's claim 2 ("beats generic RL") at each track: the paper's agent against the best SB3 agent.

    Each measure (success by turn 10, shown-image percentile at turn 5) is judged against the SB3
    agent (or variant) of highest mean on that measure at that budget (``best_generic``: the best
    by success by turn 10). *Supported* when the paper's interval lies above the generic agent's, *not
    supported* when it lies below, *inconclusive* when they overlap (intervals over seeds).
    """
    verdicts = []
    for track in args.tracks:
        at = {name: next((p for p in points if p["calls"] == track), None) for name, points in agents.items()}
        paper = at.get("paper")
        generic = {name: p for name, p in at.items() if p is not None and is_sb3_agent(base_agent(name))}
        if paper is None or not generic:
            verdicts.append({"calls": track, "verdict": "not measured (runs missing)"})
            continue
        best = max(generic, key=lambda name: generic[name]["success@10"]["mean"])
        entry: dict[str, Any] = {"calls": track, "best_generic": best}
        for metric in ("success@10", "shown_percentile@5"):
            rival = max(generic, key=lambda name, metric=metric: generic[name][metric]["mean"])
            a, b = paper[metric], generic[rival][metric]
            if a["mean_ci"][0] > b["mean_ci"][1]:
                verdict = "supported"
            elif a["mean_ci"][1] < b["mean_ci"][0]:
                verdict = "not supported"
            else:
                verdict = "inconclusive"
            entry[metric] = {"paper": a["mean"], "generic": b["mean"], "generic_agent": rival, "verdict": verdict}
        verdicts.append(entry)
    return verdicts


# ---------------------------------------------------------------------------- output
def _cell(point: Mapping[str, Any] | None, name: str) -> str:
    if point is None or name not in point:
        return "—"
    value = point[name]
    return f"{100 * value['mean']:.1f} [{100 * value['mean_ci'][0]:.1f}, {100 * value['mean_ci'][1]:.1f}]"


def to_markdown(report: Mapping[str, Any]) -> str:
    """The scoreboard (one table per track) and the curves' IQM table."""
    settings = report["settings"]
    names = [f"{m}@{t}" for m, t in CURVE_METRICS]
    labels = ["success by turn 5 (%)", "success by turn 10 (%)", "shown-image rank pct. at turn 5 (%)",
              "agent ranking pct. at turn 5 (%)"]  # fmt: skip
    lines = [
        "# Learning curves at equal interaction budgets",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']} "
        f"({report['machine']['cpu_count']} cores). "
        f"Seeds {settings['seeds']}; {settings['eval_episodes']} test episodes (seed {settings['eval_seed']}), the "
        "same for every agent and budget. A budget counts simulator calls (captions of the user simulator, look-ahead "
        "included); every figure is the mean over seeds with rliable's 95% stratified-bootstrap interval over seeds.",
        "",
    ]
    random = report["random"]
    for track in settings["tracks"]:
        lines += [f"## Fixed budget: {track:,} simulator calls", "",
                  "| agent | seeds | calls spent (look-ahead) | " + " | ".join(labels) + " |",
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in labels) + " |"]  # fmt: skip
        for agent, points in report["agents"].items():
            point = next((p for p in points if p["calls"] == track), None)
            if point is None:
                lines.append(f"| {agent} | — | not reached yet | " + " | ".join("—" for _ in labels) + " |")
                continue
            spent = f"{int(np.mean(point['spent'])):,} ({int(np.mean(point['lookahead_calls'])):,})"
            lines.append(f"| {agent} | {len(point['spent'])} | {spent} | "
                         + " | ".join(_cell(point, n) for n in names) + " |")  # fmt: skip
        random_cells = [f"{100 * random[n]['mean']:.1f}" if n in random else "—" for n in names]
        lines += ["| random (no training) | — | 0 | " + " | ".join(random_cells) + " |", ""]
    lines += ["## The paper's claim 2 at equal budgets", "",
              "Both stages beat generic RL: the paper's agent against the best SB3 agent at each budget "
              "on each measure; *supported* when the intervals over seeds are disjoint in its favour.", ""]
    for claim in report["claim2"]:
        if "best_generic" not in claim:
            lines.append(f"- {claim['calls']:,} calls: {claim['verdict']}.")
            continue
        parts = [f"{metric}: paper {100 * c['paper']:.1f} vs `{c['generic_agent']}` {100 * c['generic']:.1f}, "
                 f"{c['verdict']}" for metric, c in claim.items() if isinstance(c, dict)]  # fmt: skip
        lines.append(f"- {claim['calls']:,} calls, best generic agent `{claim['best_generic']}`: " + "; ".join(parts))
    lines += ["", "## Curves (IQM over seeds)", "",
              "| agent | calls | " + " | ".join(labels) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in labels) + " |"]  # fmt: skip
    for agent, points in report["agents"].items():
        for point in points:
            cells = [f"{100 * point[n]['iqm']:.1f}" if n in point else "—" for n in names]
            lines.append(f"| {agent} | {point['calls']:,} | " + " | ".join(cells) + " |")
    lines += ["", "Hyper-parameters of the SB3 agents over the project's defaults (`TUNED` in "
              "`benchmarks/learning_curves.py`, then `--variants`):", ""]  # fmt: skip
    for agent, settings in report["hyperparameters"].items():
        lines.append(f"- `{agent}`: `{json.dumps(settings)}`")
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: Path) -> bool:
    """Draw the curves (IQM with 95% bands) against simulator calls; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [f"{m}@{t}" for m, t in CURVE_METRICS[:3]]
    titles = ["success by turn 5", "success by turn 10", "shown-image rank percentile, turn 5"]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names) + 2, 4))
    palette = plt.get_cmap("tab20")  # one colour per agent, the same in every panel
    colours = {agent: palette(i % palette.N) for i, agent in enumerate(report["agents"])}
    for axis, name, title in zip(axes, names, titles, strict=True):
        for agent, points in report["agents"].items():
            points = [p for p in points if name in p]
            if not points:
                continue
            calls = [p["calls"] for p in points]
            style = "--" if is_sb3_agent(base_agent(agent)) else "-"  # generic RL dashed
            axis.plot(calls, [p[name]["iqm"] for p in points], marker="o", linestyle=style, color=colours[agent],
                      label=agent)  # fmt: skip
            axis.fill_between(calls, [p[name]["iqm_ci"][0] for p in points], [p[name]["iqm_ci"][1] for p in points],
                              color=colours[agent], alpha=0.2)  # fmt: skip
        if name in report["random"]:
            axis.axhline(report["random"][name]["mean"], color="grey", linestyle="--", label="random")
        axis.set_xscale("log")
        axis.set_xlabel("simulator calls (look-ahead included)")
        axis.set_title(title)
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Train what is missing (within ``--part-minutes``), evaluate every snapshot, write the report."""
    parser = dataclass_parser(Args, "Learning curves of every learned agent against simulator calls.")
    args = Args(**vars(parser.parse_args(argv)))
    if args.quick:
        args.agents = [a for a in args.agents if a in ("paper", "ppo")] or ["paper", "ppo"]
        args.seeds, args.max_calls, args.checkpoints, args.tracks = [1, 2], 3_000, [1_000, 3_000], [1_000, 3_000]
        args.pretrain_iterations, args.batch_size, args.n_envs, args.eval_episodes = 6, 16, 8, 40
    try:
        check_args(args)
    except ConfigurationError as error:
        parser.error(str(error))
    started = time.perf_counter()
    try:
        curves = Curves(args)
        reused = previous_runs(args)
        if reused:
            print(f"taken from {args.previous}: {', '.join(f'{n}-s{s}' for n, s in reused)}", flush=True)
        part_done = None
        for agent in args.agents:
            for seed in args.seeds:
                if (agent, seed) in reused:
                    continue
                try:
                    curves.train(agent, seed)
                except PartDone as done:
                    part_done = str(done)
                    break
            if part_done:
                break
        runs = {
            agent: {seed: reused.get((agent, seed)) or curves.evaluate_snapshots(agent, seed) for seed in args.seeds}
            for agent in args.agents
        }
        report = build_report(args, runs, curves.random_reference())
        report["fingerprints"] = {
            agent: {str(seed): run_fingerprint(args, agent, seed) for seed in args.seeds} for agent in args.agents
        }
        report["reused_runs"] = [f"{name}-s{seed}" for name, seed in reused]
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["hyperparameters"] = {
        name: hyperparameters_of(args, name) for name in args.agents if is_sb3_agent(base_agent(name))
    }
    report["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report["command"] = "python benchmarks/learning_curves.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["machine"] = machine_info()
    report["wall_seconds_this_part"] = time.perf_counter() - started
    report["complete"] = part_done is None
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "learning_curves", report, markdown)
    plot(report, Path(args.out) / "learning_curves.png")
    if part_done is not None:
        print(f"part done ({part_done}); run the same command again to continue", file=sys.stderr)
        return EXIT_PART_DONE
    return 0


if __name__ == "__main__":
    sys.exit(main())
