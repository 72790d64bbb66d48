"""Every agent, the same episodes: per-turn results with confidence intervals, and the paper's claims.

Trains (or loads from ``--runs-dir``) and evaluates every agent on the same fixed test episodes:

- references: ``random``; ``attribute-oracle`` (privileged: it reads the catalogue's attributes);
- the paper's agent after stage 1 and after stage 2, trained and evaluated with the rule-based
  user's natural-language feedback (``paper-stage1``, ``paper-stage2``);
- the paper's agent trained and evaluated with WhittleSearch-style relative-attribute feedback
  (``relative-stage1``, ``relative-stage2``; ``user="relative-attribute"``);
- the dialog retriever (``dialog-retriever``, ours, beyond the paper: :mod:`agents.dialog_retriever`),
  trained and evaluated with the rule-based user;
- the Stable-Baselines3 baselines (``ppo``, ``a2c``, ``dqn``, ``ppo-query``, ``sac-query``,
  ``td3-query``).

Every learned agent is trained (:mod:`agents.training`, with ``train_agent.py``'s defaults for
what the budget leaves open) with each of ``--seeds``; confidence intervals are 95% bootstrap
intervals that resample seeds and episodes. Runs already in ``--runs-dir`` (a finished
checkpoint) are loaded instead of retrained, and an interrupted training of the paper's agent
continues from its last checkpoint, so an interrupted comparison resumes where it was.
Writes ``agents.md`` (tables and the verdict on each claim), ``agents.json`` (every number, the
command, seeds, versions, wall time) and ``agents.png`` (per-turn curves with confidence bands).

Usage::

    python benchmarks/compare_agents.py                 # the full comparison
    python benchmarks/compare_agents.py --quick         # the same pipeline with tiny budgets
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent
from agents.baselines import RandomAgent
from agents.checkpoints import agent_from_checkpoint, load_dialog_manager
from agents.dialog_manager import DialogManagerAgent, resolve_device
from agents.evaluation import EpisodeSet, EvaluationResult, evaluate, metric_values
from agents.oracle import AttributeOracleAgent
from agents.registry import SB3_AGENTS, is_sb3_agent
from agents.training import (
    LAST_CHECKPOINT,
    PaperTrainingConfig,
    RetrieverTrainingConfig,
    SB3TrainingConfig,
    TrainingHooks,
    TrainingInterrupted,
    final_model_path,
    prepare_torch,
    read_trained_budget,
    read_training_checkpoint,
    remove_interrupted_writes,
    resume_changes,
    stop_on_sigint,
    torch_threads_for,
    train_paper_agent,
    train_retriever_agent,
    train_sb3_agent,
)
from dialog_env.cli import dataclass_parser
from dialog_env.dynamics import InteractionBudget
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import ConfigurationError, DialogEnvError
from dialog_env.runs import RunFolder
from dialog_env.synthetic import make_synthetic_shoes

ROOT = Path(__file__).resolve().parents[1]
# As in every benchmark: ``benchmarks`` is not an installed package (and torchrl installs an unrelated
# ``benchmarks`` namespace into site-packages), so a script run needs the root to import the shared report writer.
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/compare_agents.py)
    sys.path.insert(0, str(ROOT))

from benchmarks.report import write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("shown_percentile", "success", "ranking_percentile", "recall@10", "recall@50")
#: The claims' bootstrap generator is seeded with ``--eval-seed`` plus this, the tables' with
#: ``--eval-seed`` itself: two generators, so that the claims' intervals do not move when the
#: tables draw more (another agent, another metric).
CLAIMS_SEED_OFFSET = 1


@dataclass
class Args:
    """Options of ``compare_agents.py`` (each field is a ``--flag``; its docstring, the help)."""

    quick: bool = False
    """tiny budgets on a small catalogue (a smoke test of the pipeline)"""
    seeds: list[int] | None = None
    """training seeds (default 1 2 3; --quick: 1 2)"""
    eval_seed: int = 2018
    """seed of the evaluation episodes"""
    resamples: int = 1000
    """bootstrap resamples"""
    runs_dir: str | None = None
    """where runs are trained or loaded (default runs/compare, --quick: runs/compare-quick)"""
    out: str | None = None
    """output folder (default benchmarks/results; --quick: the runs dir)"""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    """Command-line options from :class:`Args`, with the defaults that depend on ``--quick`` filled in."""
    parser = dataclass_parser(Args, "Compare every agent on the same episodes.")
    args = Args(**vars(parser.parse_args(argv)))
    return dataclasses.replace(
        args,
        seeds=args.seeds or ([1, 2] if args.quick else [1, 2, 3]),
        runs_dir=args.runs_dir or ("runs/compare-quick" if args.quick else "runs/compare"),
    )


@dataclass(frozen=True)
class Budget:
    """Training budgets of one comparison."""

    pretrain_iterations: int
    improve_iterations: int
    batch_size: int
    total_timesteps: int
    episodes: int
    retriever_iterations: int


FULL = Budget(pretrain_iterations=400, improve_iterations=60, batch_size=128, total_timesteps=20_000, episodes=1000,
              retriever_iterations=300)  # fmt: skip
QUICK = Budget(pretrain_iterations=3, improve_iterations=1, batch_size=8, total_timesteps=64, episodes=40,
               retriever_iterations=3)  # fmt: skip


@dataclass
class Entry:
    """One agent of the comparison: its per-seed evaluations."""

    name: str
    label: str
    results: list[EvaluationResult] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    budgets: list[InteractionBudget | None] = field(default_factory=list)
    """per seed: the interaction budget of its training (nothing for the references; ``None``: unknown)"""


def bootstrap(values: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, float]:
    """Mean of ``(S, E)`` values (seeds x episodes) with a 95% bootstrap interval resampling seeds and episodes.

    Each resample draws seeds and episodes apart, with one episode draw for every seed: the
    episodes are shared by the seeds.
    """
    num_seeds, num_episodes = values.shape
    seed_draws = rng.integers(num_seeds, size=(resamples, num_seeds))
    episode_draws = rng.integers(num_episodes, size=(resamples, num_episodes))
    means = np.array([values[s][:, e].mean() for s, e in zip(seed_draws, episode_draws, strict=True)])
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def stacked(entry: Entry, metric: str, turn: int) -> np.ndarray | None:
    """``(S, E)`` values of one metric at one turn (1-based), or ``None`` if the agent lacks it."""
    rows = []
    for result in entry.results:
        values = metric_values(result)
        if metric not in values:
            return None
        rows.append(values[metric][:, turn - 1])
    return np.stack(rows)


def verdict(difference: dict[str, float]) -> str:
    """A claim's verdict from the interval of a difference (``a - b``): supported if it lies above 0."""
    if difference["low"] > 0:
        return "supported"
    if difference["high"] < 0:
        return "not supported (the opposite holds)"
    return "inconclusive"


class Comparison:
    """Trains, loads and evaluates every agent of the comparison (see the module docstring)."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.budget = QUICK if args.quick else FULL
        self.runs_dir = Path(args.runs_dir or "runs/compare")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.catalog_path: str | None = None
        if args.quick:  # a small catalogue keeps the quick pipeline under a few minutes
            path = self.runs_dir / "quick-catalog.h5"
            if not path.exists():
                make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7).save(path)
            self.catalog_path = str(path)
        probe = DialogRetrievalEnv(catalog=self.catalog_path, split="test")
        self.episodes = EpisodeSet.draw(probe.catalog.num_images, self.budget.episodes, args.eval_seed)
        self.image_dim = probe.catalog.dim

    # ------------------------------------------------------------------ training
    def _train(self, agent: str, seed: int, run_name: str, user: str) -> Path:
        """Train one agent (:mod:`agents.training`) in ``runs_dir/run_name`` unless its run already finished."""
        run_dir = self.runs_dir / run_name
        checkpoint_dir = run_dir / "checkpoints"
        final = final_model_path(checkpoint_dir, agent)
        if final.exists():
            print(f"  {run_name}: loading the finished run", flush=True)
            return run_dir
        print(f"  {run_name}: training ({agent}, user {user}) ...", flush=True)
        started = time.perf_counter()
        budget = self.budget
        env_kwargs = {"catalog": self.catalog_path, "user": user, "user_kwargs": {}}
        with RunFolder(run_dir, "compare_agents.py") as folder:
            prepare_torch(seed, torch_threads_for(agent))
            device = resolve_device("auto")
            if is_sb3_agent(agent):  # an interrupted SB3 training starts again (this script keeps no last.zip)
                folder.started()
                config = SB3TrainingConfig(agent, seed=seed, total_timesteps=budget.total_timesteps)
                train_sb3_agent(config, env_kwargs, final, device=device, tensorboard_log=run_dir / "tensorboard")
            else:
                config: PaperTrainingConfig | RetrieverTrainingConfig
                if agent == "dialog-retriever":
                    config = RetrieverTrainingConfig(
                        seed=seed, batch_size=budget.batch_size, retriever_iterations=budget.retriever_iterations
                    )
                else:
                    config = PaperTrainingConfig(
                        seed=seed, batch_size=budget.batch_size, pretrain_iterations=budget.pretrain_iterations,
                        improve_iterations=budget.improve_iterations,
                    )  # fmt: skip
                settings = {"agent": agent, "catalog": self.catalog_path, "user": user, **dataclasses.asdict(config)}
                resumed = self._resumed(checkpoint_dir / LAST_CHECKPOINT, settings)
                folder.started()
                remove_interrupted_writes(checkpoint_dir)  # the folder's lock: no live process is writing there
                with stop_on_sigint(_warn) as stop_requested:
                    hooks = TrainingHooks(stop_requested=stop_requested)  # quiet: this script reports per run
                    train = train_retriever_agent if agent == "dialog-retriever" else train_paper_agent
                    train(config, env_kwargs, checkpoint_dir, device=device, resumed=resumed,  # type: ignore[arg-type]
                          run_settings=settings, hooks=hooks)  # fmt: skip
        print(f"  {run_name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        return run_dir

    @staticmethod
    def _resumed(last: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The checkpoint an interrupted training continues from, if any, once its settings are checked.

        Raises:
            ConfigurationError: the checkpoint was made with other settings (another budget...).
        """
        if not last.exists():
            return None
        resumed = read_training_checkpoint(last)
        changes = resume_changes(resumed["args"], settings, resumed)
        if changes:
            listing = "; ".join(
                f"{c.key}: {c.before!r} -> {c.now!r}" + (f" ({c.reason})" if c.reason else "") for c in changes
            )
            raise ConfigurationError(
                f"{str(last)!r} was trained with other settings ({listing}); remove its run folder or choose "
                f"another --runs-dir"
            )
        return resumed

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, agent: Agent, user: str, seed: int) -> EvaluationResult:
        env_kwargs = {"catalog": self.catalog_path, "split": "test", "user": user}
        return evaluate(agent, self.episodes, env_kwargs, max_turns=10, seed=self.args.eval_seed)

    def run(self) -> dict[str, Entry]:
        """Train or load every agent and evaluate it; returns the entries by agent name."""
        seeds = list(self.args.seeds or [1])
        entries: dict[str, Entry] = {}

        def add(name: str, label: str, result: EvaluationResult, seed: int, model: Path | None = None) -> None:
            entry = entries.setdefault(name, Entry(name, label))
            entry.results.append(result)
            entry.seeds.append(seed)
            entry.budgets.append(InteractionBudget() if model is None else read_trained_budget(model))

        print("references", flush=True)
        add("random", "random", self._evaluate(RandomAgent(seed=seeds[0]), "rule", seeds[0]), seeds[0])
        oracle = self._evaluate(AttributeOracleAgent(), "rule", seeds[0])
        add("attribute-oracle", "attribute oracle (privileged)", oracle, seeds[0])
        users = (("rule", "paper", "natural language"), ("relative-attribute", "relative", "relative attributes"))
        for user, prefix, label in users:
            print(f"the paper's agent with {label} feedback", flush=True)
            for seed in seeds:
                run_dir = self._train("paper", seed, f"{prefix}-s{seed}", user)
                words = DialogRetrievalEnv(catalog=self.catalog_path, split="test", user=user).vocabulary.words
                for stage, checkpoint in (("stage1", "stage1.pt"), ("stage2", "final.pt")):
                    model = load_dialog_manager(run_dir / "checkpoints" / checkpoint, self.image_dim, words)
                    name = f"{prefix}-{stage}"
                    result = self._evaluate(DialogManagerAgent(model, name=name), user, seed)
                    path = run_dir / "checkpoints" / checkpoint
                    add(name, f"paper {stage.replace('stage', 'stage ')} ({label})", result, seed, path)
        print("the dialog retriever (ours)", flush=True)
        for seed in seeds:
            run_dir = self._train("dialog-retriever", seed, f"dialog-retriever-s{seed}", "rule")
            final = run_dir / "checkpoints" / "final.pt"
            retriever, _ = agent_from_checkpoint(final, self.image_dim, name="dialog-retriever")
            add("dialog-retriever", "dialog retriever (ours)", self._evaluate(retriever, "rule", seed), seed, final)
        from agents.sb3 import SB3Agent, load_model, make_training_env  # optional dependency, needed from here on

        train_split = DialogRetrievalEnv(catalog=self.catalog_path, split="train").catalog
        for agent_name in SB3_AGENTS:
            print(f"Stable-Baselines3: {agent_name}", flush=True)
            for seed in seeds:
                run_dir = self._train(agent_name, seed, f"{agent_name}-s{seed}", "rule")
                spaces_env = make_training_env(agent_name, {"catalog": self.catalog_path, "split": "train"}, n_envs=1)
                final = final_model_path(run_dir / "checkpoints", agent_name)
                model = load_model(agent_name, final, spaces_env, device="cpu")
                agent = SB3Agent(model, agent_name, action_catalog=train_split)
                add(agent_name, f"SB3 {agent_name}", self._evaluate(agent, "rule", seed), seed, final)
        return entries


def summarize_entries(entries: dict[str, Entry], resamples: int, seed: int) -> dict[str, Any]:
    """Per-turn means and bootstrap intervals of every metric of every entry (``agents.json``'s ``"agents"``)."""
    rng = np.random.default_rng(seed)
    summary = {}
    for name, entry in entries.items():
        turns = []
        for turn in range(1, 11):
            row: dict[str, Any] = {"turn": turn}
            for metric in METRICS:
                values = stacked(entry, metric, turn)
                if values is not None:
                    row[metric] = bootstrap(values, rng, resamples)
            turns.append(row)
        known = [b for b in entry.budgets if b is not None]
        budget = None
        if len(known) == len(entry.budgets):
            budget = {key: int(np.mean([b.as_dict()[key] for b in known])) for key in InteractionBudget().as_dict()}
        summary[name] = {"label": entry.label, "seeds": entry.seeds, "turns": turns, "interaction_budget": budget}
    return summary


def claims(entries: dict[str, Entry], resamples: int, seed: int) -> list[dict[str, Any]]:
    """The claims as paired differences (same episodes, same seeds) at turns 5 and 10.

    The paper's three claims, then ours: the dialog retriever beats the paper's agent.
    """
    rng = np.random.default_rng(seed + CLAIMS_SEED_OFFSET)

    def difference(a: str, b: str, metric: str, turn: int) -> dict[str, float] | None:
        values_a, values_b = stacked(entries[a], metric, turn), stacked(entries[b], metric, turn)
        if values_a is None or values_b is None:
            return None
        if values_a.shape != values_b.shape:  # e.g. a single-seed reference: compare with the seed mean
            values_b = np.broadcast_to(values_b.mean(axis=0, keepdims=True), values_a.shape)
        return bootstrap(values_a - values_b, rng, resamples)

    best_sb3 = (
        max(SB3_AGENTS, key=lambda name: stacked(entries[name], "success", 10).mean())
        if all(name in entries for name in SB3_AGENTS)
        else None
    )
    items = [
        ("Policy improvement beats supervised pre-training alone", [("paper-stage2", "paper-stage1")]),
        (
            "Both stages beat generic RL baselines trained on the same environment "
            f"(best SB3 agent at turn 10: {best_sb3})",
            [("paper-stage1", best_sb3), ("paper-stage2", best_sb3)] if best_sb3 else [],
        ),
        (
            "Natural-language feedback beats relative-attribute feedback",
            [("paper-stage2", "relative-stage2"), ("paper-stage1", "relative-stage1")],
        ),
        (  # not the paper's: the project's own agent against the paper's
            "Beyond the paper: the dialog retriever beats the paper's agent after stage 2",
            [("dialog-retriever", "paper-stage2")] if "dialog-retriever" in entries else [],
        ),
    ]
    report = []
    for text, pairs in items:
        comparisons = []
        for a, b in pairs:
            for turn in (5, 10):
                for metric in ("success", "shown_percentile"):
                    d = difference(a, b, metric, turn)
                    if d is not None:
                        comparisons.append(
                            {"a": a, "b": b, "metric": metric, "turn": turn, "difference": d, "verdict": verdict(d)}
                        )
        verdicts = {c["verdict"] for c in comparisons}
        overall = "supported" if verdicts == {"supported"} else ("inconclusive" if comparisons else "not measured")
        if any(v.startswith("not supported") for v in verdicts):
            overall = "not supported"
        elif verdicts and verdicts != {"supported"} and "supported" in verdicts:
            overall = "partly supported (see the rows)"
        report.append({"claim": text, "verdict": overall, "comparisons": comparisons})
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """``agents.md``: the per-turn table of every agent, then each claim with its comparisons."""

    def cell(value: dict[str, float] | None, signed: bool = False) -> str:
        if value is None:
            return ""
        sign = "+" if signed else ""
        return f"{100 * value['mean']:{sign}.1f} [{100 * value['low']:{sign}.1f}, {100 * value['high']:{sign}.1f}]"

    quick = " QUICK MODE: tiny budgets, not results." if report["quick"] else ""
    lines = [
        "# Agents compared on the same episodes",
        "",
        f"Command: `{report['command']}` ({report['wall_seconds'] / 60:.1f} min). {report['episodes']:,} test episodes "
        f"(seed {report['eval_seed']}), the same for every agent; training seeds {report['seeds']} for every learned "
        f"agent. Mean [95% bootstrap interval over seeds and episodes], in %.{quick}",
        "",
        "Training budgets differ between agents here (see `--help`): the column *simulator calls* is the mean "
        "interaction budget each agent was trained with, in captions of the user simulator (look-ahead included); "
        "`benchmarks/learning_curves.py` compares agents at equal budgets.",
        "",
        "| agent | seeds | simulator calls | turn | shown-image rank pct. | success by turn | agent ranking pct. "
        "| R@10 | R@50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for summary in report["agents"].values():
        budget = summary.get("interaction_budget")
        calls = "unknown" if budget is None else f"{budget['simulator_calls']:,}"
        for turn in range(1, 11):
            row = summary["turns"][turn - 1]
            cells = " | ".join(cell(row.get(metric)) for metric in METRICS)
            lines.append(f"| {summary['label']} | {len(summary['seeds'])} | {calls} | {turn} | {cells} |")
    lines += ["", "## The paper's claims", ""]
    for item in report["claims"]:
        lines += [f"**{item['claim']}**: {item['verdict']}.", ""]
        lines += ["| comparison | metric | turn | difference | verdict |", "| --- | --- | ---: | ---: | --- |"]
        for c in item["comparisons"]:
            difference = cell(c["difference"], True)
            lines.append(f"| {c['a']} minus {c['b']} | {c['metric']} | {c['turn']} | {difference} | {c['verdict']} |")
        lines.append("")
    lines += ["Per-turn curves: `agents.png`; every number: `agents.json`.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """``agents.png``: per-turn shown-image rank percentile and success of every agent, with their bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    turns = np.arange(1, 11)
    colors = plt.get_cmap("tab20").colors
    for index, (name, summary) in enumerate(report["agents"].items()):
        # References dotted, the paper's agent solid, SB3 baselines dashed.
        style = ":" if name in ("random", "attribute-oracle") else ("--" if name in SB3_AGENTS else "-")
        color = colors[(2 * index) % 20] if index < 10 else colors[(2 * index + 1) % 20]
        for axis, metric in zip(axes, ("shown_percentile", "success"), strict=True):
            rows = summary["turns"]
            mean = np.array([100 * r[metric]["mean"] for r in rows])
            low = np.array([100 * r[metric]["low"] for r in rows])
            high = np.array([100 * r[metric]["high"] for r in rows])
            axis.plot(turns, mean, style, marker="o", markersize=3, color=color, label=summary["label"])
            axis.fill_between(turns, low, high, color=color, alpha=0.15)
    axes[0].set(
        xlabel="turn",
        ylabel="rank percentile of the target w.r.t. the shown image (%)",
        title="Shown-image rank percentile",
    )
    axes[1].set(xlabel="turn", ylabel="target shown at or before the turn (%)", title="Success by turn")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.set_xticks(turns)
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle(
        f"{report['episodes']:,} test episodes, training seeds {report['seeds']}; bands: 95% bootstrap intervals"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Compare every agent and write ``agents.json``, ``agents.md`` and ``agents.png``; returns the exit status."""
    args = parse_args(argv)
    out = Path(args.out) if args.out else (Path(args.runs_dir or "") if args.quick else RESULTS)
    started = time.perf_counter()
    try:
        comparison = Comparison(args)
        entries = comparison.run()
    except TrainingInterrupted as interrupted:
        print(f"\ninterrupted: {interrupted}; run the same command again to continue", file=sys.stderr)
        return 130
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import gymnasium
    import torch

    report = {
        "command": "python benchmarks/compare_agents.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": bool(args.quick),
        "seeds": args.seeds,
        "episodes": len(comparison.episodes),
        "eval_seed": args.eval_seed,
        "budget": dataclasses.asdict(comparison.budget),
        "agents": summarize_entries(entries, args.resamples, args.eval_seed),
        "claims": claims(entries, args.resamples, args.eval_seed),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
        },  # fmt: skip
    }
    report["wall_seconds"] = time.perf_counter() - started
    markdown = to_markdown(report)
    print(markdown)
    write_report(out, "agents", report, markdown)
    plot(report, out / "agents.png")
    print(f"wrote {out / 'agents.png'}; {report['wall_seconds'] / 60:.1f} min in all", flush=True)
    return 0


def _warn(message: str) -> None:
    print(f"\n{message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
