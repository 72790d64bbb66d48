"""Every agent, the same episodes: per-turn results with confidence intervals, and the paper's claims.

Trains (or loads from ``--runs-dir``) and evaluates every agent on the same fixed test episodes:

- references: ``random``; ``attribute-oracle`` (privileged: it reads the catalogue's attributes);
- the paper's agent after stage 1 and after stage 2, trained and evaluated with the rule-based
  user's natural-language feedback (``paper-stage1``, ``paper-stage2``);
- the paper's agent trained and evaluated with WhittleSearch-style relative-attribute feedback
  (``relative-stage1``, ``relative-stage2``; ``user="relative-attribute"``);
- the Stable-Baselines3 baselines (``ppo``, ``a2c``, ``dqn``, ``ppo-query``, ``sac-query``,
  ``td3-query``).

Every learned agent is trained with each of ``--seeds``; confidence intervals are 95% bootstrap
intervals that resample seeds and episodes. Runs already in ``--runs-dir`` (a finished
checkpoint) are loaded instead of retrained, so an interrupted comparison resumes where it was.
Writes ``agents.md`` (tables and the verdict on each claim), ``agents.json`` (every number, the
command, seeds, versions, wall time) and ``agents.png`` (per-turn curves with confidence bands).

Usage::

    python benchmarks/compare_agents.py                 # the full comparison
    python benchmarks/compare_agents.py --quick         # the same pipeline with tiny budgets
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: train_agent.py lives at the root
    sys.path.insert(0, str(ROOT))

import train_agent  # noqa: E402
from agents.base import Agent  # noqa: E402
from agents.baselines import RandomAgent  # noqa: E402
from agents.checkpoints import load_dialog_manager  # noqa: E402
from agents.dialog_manager import DialogManagerAgent  # noqa: E402
from agents.evaluation import EpisodeSet, EvaluationResult, evaluate, metric_values  # noqa: E402
from agents.oracle import AttributeOracleAgent  # noqa: E402
from dialog_env.env import DialogRetrievalEnv  # noqa: E402
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("shown_percentile", "success", "ranking_percentile", "recall@10", "recall@50")
SB3_AGENTS = train_agent.SB3_AGENTS


@dataclass(frozen=True)
class Budget:
    """Training budgets of one comparison."""

    pretrain_iterations: int
    improve_iterations: int
    batch_size: int
    total_timesteps: int
    episodes: int


FULL = Budget(pretrain_iterations=400, improve_iterations=60, batch_size=128, total_timesteps=20_000, episodes=1000)
QUICK = Budget(pretrain_iterations=3, improve_iterations=1, batch_size=8, total_timesteps=64, episodes=40)


@dataclass
class Entry:
    """One agent of the comparison: its per-seed evaluations."""

    name: str
    label: str
    results: list[EvaluationResult] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def bootstrap(values: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, float]:
    """Mean of ``(S, E)`` values (seeds x episodes) with a 95% bootstrap interval resampling seeds
    and episodes (the same episode draw for every seed: the episodes are shared)."""
    num_seeds, num_episodes = values.shape
    seed_draws = rng.integers(num_seeds, size=(resamples, num_seeds))
    episode_draws = rng.integers(num_episodes, size=(resamples, num_episodes))
    means = np.array([values[s][:, e].mean() for s, e in zip(seed_draws, episode_draws)])
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
    if difference["low"] > 0:
        return "supported"
    if difference["high"] < 0:
        return "not supported (the opposite holds)"
    return "inconclusive"


class Comparison:
    """Trains, loads and evaluates every agent of the comparison (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.budget = QUICK if args.quick else FULL
        self.runs_dir = Path(args.runs_dir)
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
        """Train one agent with ``train_agent.py`` unless its run already finished."""
        run_dir = self.runs_dir / run_name
        finished = run_dir / "checkpoints" / ("final.zip" if agent in SB3_AGENTS else "final.pt")
        if finished.exists():
            print(f"  {run_name}: loading the finished run", flush=True)
            return run_dir
        budget = self.budget
        argv = [
            "--agent", agent, "--seed", str(seed), "--run-name", run_name, "--runs-dir", str(self.runs_dir),
            "--user", user, "--pretrain-iterations", str(budget.pretrain_iterations),
            "--improve-iterations", str(budget.improve_iterations), "--batch-size", str(budget.batch_size),
            "--total-timesteps", str(budget.total_timesteps), "--eval-episodes", str(min(budget.episodes, 100)),
            "--no-eval-random", "--no-progress",
        ]  # fmt: skip
        if self.catalog_path is not None:
            argv += ["--catalog", self.catalog_path]
        if (run_dir / "checkpoints").exists():
            argv.append("--resume")  # an interrupted run continues from its last checkpoint
        print(f"  {run_name}: training ({agent}, user {user}) ...", flush=True)
        started = time.perf_counter()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            code = train_agent.main(argv)
        if code != 0:
            raise RuntimeError(f"train_agent.py {' '.join(argv)} failed with exit code {code}:\n{log.getvalue()[-2000:]}")
        print(f"  {run_name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        return run_dir

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, agent: Agent, user: str, seed: int) -> EvaluationResult:
        env_kwargs = {"catalog": self.catalog_path, "split": "test", "user": user}
        return evaluate(agent, self.episodes, env_kwargs, max_turns=10, seed=self.args.eval_seed)

    def run(self) -> dict[str, Entry]:
        seeds = list(self.args.seeds)
        entries: dict[str, Entry] = {}

        def add(name: str, label: str, result: EvaluationResult, seed: int) -> None:
            entry = entries.setdefault(name, Entry(name, label))
            entry.results.append(result)
            entry.seeds.append(seed)

        print("references", flush=True)
        add("random", "random", self._evaluate(RandomAgent(seed=seeds[0]), "rule", seeds[0]), seeds[0])
        add("attribute-oracle", "attribute oracle (privileged)", self._evaluate(AttributeOracleAgent(), "rule", seeds[0]), seeds[0])
        for user, prefix, label in (("rule", "paper", "natural language"), ("relative-attribute", "relative", "relative attributes")):
            print(f"the paper's agent with {label} feedback", flush=True)
            for seed in seeds:
                run_dir = self._train("paper", seed, f"{prefix}-s{seed}", user)
                words = DialogRetrievalEnv(catalog=self.catalog_path, split="test", user=user).vocabulary.words
                for stage, checkpoint in (("stage1", "stage1.pt"), ("stage2", "final.pt")):
                    model = load_dialog_manager(run_dir / "checkpoints" / checkpoint, self.image_dim, words)
                    name = f"{prefix}-{stage}"
                    add(name, f"paper {stage.replace('stage', 'stage ')} ({label})", self._evaluate(DialogManagerAgent(model, name=name), user, seed), seed)
        from agents.sb3 import SB3Agent, load_model, make_training_env  # optional dependency, needed from here on

        train_split = DialogRetrievalEnv(catalog=self.catalog_path, split="train").catalog
        for agent_name in SB3_AGENTS:
            print(f"Stable-Baselines3: {agent_name}", flush=True)
            for seed in seeds:
                run_dir = self._train(agent_name, seed, f"{agent_name}-s{seed}", "rule")
                spaces_env = make_training_env(agent_name, {"catalog": self.catalog_path, "split": "train"}, n_envs=1)
                model = load_model(agent_name, run_dir / "checkpoints" / "final.zip", spaces_env, device="cpu")
                agent = SB3Agent(model, agent_name, action_catalog=train_split)
                add(agent_name, f"SB3 {agent_name}", self._evaluate(agent, "rule", seed), seed)
        return entries


def summarize_entries(entries: dict[str, Entry], resamples: int, seed: int) -> dict[str, Any]:
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
        summary[name] = {"label": entry.label, "seeds": entry.seeds, "turns": turns}
    return summary


def claims(entries: dict[str, Entry], resamples: int, seed: int) -> list[dict[str, Any]]:
    """The paper's three claims as paired differences (same episodes, same seeds) at turns 5 and 10."""
    rng = np.random.default_rng(seed + 1)

    def difference(a: str, b: str, metric: str, turn: int) -> dict[str, float] | None:
        values_a, values_b = stacked(entries[a], metric, turn), stacked(entries[b], metric, turn)
        if values_a is None or values_b is None:
            return None
        if values_a.shape != values_b.shape:  # e.g. a single-seed reference: compare with the seed mean
            values_b = np.broadcast_to(values_b.mean(axis=0, keepdims=True), values_a.shape)
        return bootstrap(values_a - values_b, rng, resamples)

    best_sb3 = max(SB3_AGENTS, key=lambda name: stacked(entries[name], "success", 10).mean()) if all(
        name in entries for name in SB3_AGENTS
    ) else None
    items = [
        ("Policy improvement beats supervised pre-training alone", [("paper-stage2", "paper-stage1")]),
        (
            f"Both stages beat generic RL baselines trained on the same environment (best SB3 agent at turn 10: {best_sb3})",
            [("paper-stage1", best_sb3), ("paper-stage2", best_sb3)] if best_sb3 else [],
        ),
        ("Natural-language feedback beats relative-attribute feedback", [("paper-stage2", "relative-stage2"), ("paper-stage1", "relative-stage1")]),
    ]
    report = []
    for text, pairs in items:
        comparisons = []
        for a, b in pairs:
            for turn in (5, 10):
                for metric in ("success", "shown_percentile"):
                    d = difference(a, b, metric, turn)
                    if d is not None:
                        comparisons.append({"a": a, "b": b, "metric": metric, "turn": turn, "difference": d, "verdict": verdict(d)})
        verdicts = {c["verdict"] for c in comparisons}
        overall = "supported" if verdicts == {"supported"} else ("inconclusive" if comparisons else "not measured")
        if any(v.startswith("not supported") for v in verdicts):
            overall = "not supported"
        elif verdicts and verdicts != {"supported"} and "supported" in verdicts:
            overall = "partly supported (see the rows)"
        report.append({"claim": text, "verdict": overall, "comparisons": comparisons})
    return report


def to_markdown(report: dict[str, Any]) -> str:
    def cell(value: dict[str, float] | None, signed: bool = False) -> str:
        if value is None:
            return ""
        sign = "+" if signed else ""
        return f"{100 * value['mean']:{sign}.1f} [{100 * value['low']:{sign}.1f}, {100 * value['high']:{sign}.1f}]"

    lines = [
        "# Agents compared on the same episodes",
        "",
        f"Command: `{report['command']}` ({report['wall_seconds'] / 60:.1f} min). {report['episodes']:,} test episodes "
        f"(seed {report['eval_seed']}), the same for every agent; training seeds {report['seeds']} for every learned "
        f"agent. Mean [95% bootstrap interval over seeds and episodes], in %.{' QUICK MODE: tiny budgets, not results.' if report['quick'] else ''}",
        "",
        "| agent | seeds | turn | shown-image rank pct. | success by turn | agent ranking pct. | R@10 | R@50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, summary in report["agents"].items():
        for turn in range(1, 11):
            row = summary["turns"][turn - 1]
            cells = " | ".join(cell(row.get(metric)) for metric in METRICS)
            lines.append(f"| {summary['label']} | {len(summary['seeds'])} | {turn} | {cells} |")
    lines += ["", "## The paper's claims", ""]
    for item in report["claims"]:
        lines += [f"**{item['claim']}**: {item['verdict']}.", "", "| comparison | metric | turn | difference | verdict |",
                  "| --- | --- | ---: | ---: | --- |"]  # fmt: skip
        for c in item["comparisons"]:
            lines.append(f"| {c['a']} minus {c['b']} | {c['metric']} | {c['turn']} | {cell(c['difference'], True)} | {c['verdict']} |")
        lines.append("")
    lines += ["Per-turn curves: `agents.png`; every number: `agents.json`.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
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
        for axis, metric in zip(axes, ("shown_percentile", "success")):
            rows = summary["turns"]
            mean = np.array([100 * r[metric]["mean"] for r in rows])
            low = np.array([100 * r[metric]["low"] for r in rows])
            high = np.array([100 * r[metric]["high"] for r in rows])
            axis.plot(turns, mean, style, marker="o", markersize=3, color=color, label=summary["label"])
            axis.fill_between(turns, low, high, color=color, alpha=0.15)
    axes[0].set(xlabel="turn", ylabel="rank percentile of the target w.r.t. the shown image (%)", title="Shown-image rank percentile")
    axes[1].set(xlabel="turn", ylabel="target shown at or before the turn (%)", title="Success by turn")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.set_xticks(turns)
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{report['episodes']:,} test episodes, training seeds {report['seeds']}; bands: 95% bootstrap intervals")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare every agent on the same episodes.")
    parser.add_argument("--quick", action="store_true", help="tiny budgets on a small catalogue (a smoke test of the pipeline)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 1 2 3; --quick: 1 2)")
    parser.add_argument("--eval-seed", type=int, default=2018, help="seed of the evaluation episodes")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--runs-dir", default=None, help="where runs are trained or loaded (default runs/compare, --quick: runs/compare-quick)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results; --quick: the runs dir)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([1, 2] if args.quick else [1, 2, 3])
    args.runs_dir = args.runs_dir or ("runs/compare-quick" if args.quick else "runs/compare")
    out = args.out or (Path(args.runs_dir) if args.quick else RESULTS)
    started = time.perf_counter()
    comparison = Comparison(args)
    entries = comparison.run()
    import gymnasium
    import torch

    report = {
        "command": "python benchmarks/compare_agents.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": bool(args.quick),
        "seeds": args.seeds,
        "episodes": len(comparison.episodes),
        "eval_seed": args.eval_seed,
        "budget": comparison.budget.__dict__,
        "agents": summarize_entries(entries, args.resamples, args.eval_seed),
        "claims": claims(entries, args.resamples, args.eval_seed),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__, "gymnasium": gymnasium.__version__},
    }
    report["wall_seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "agents.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "agents.md").write_text(to_markdown(report))
    plot(report, out / "agents.png")
    print(to_markdown(report))
    print(f"wrote {out / 'agents.md'}, agents.json and agents.png in {report['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
