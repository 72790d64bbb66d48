"""The dialog retriever on the default catalogue: three seeds, and its ablations with paired intervals.

    python benchmarks/dialog_retriever.py            # 3 seeds x 3 trained variants, about 45 min on 2 cores
    python benchmarks/dialog_retriever.py --quick    # seconds: a tiny catalogue, a few iterations

Trains every variant of :mod:`agents.dialog_retriever` with ``train_agent.py --agent
dialog-retriever`` for each seed (the run folders under ``--runs-dir`` are reused when complete,
resumed when interrupted), then evaluates every trained model on the same test episodes:

| variant | trained with | evaluated with |
| --- | --- | --- |
| ``full`` | contrastive loss, every turn | greedy selection |
| ``last-turn`` | contrastive loss, the newest turn only | greedy selection |
| ``triplet`` | the paper's triplet loss (one random negative), every turn | greedy selection |
| ``split`` | the ``full`` models | belief-splitting selection |

It reports success by turns 5 and 10 and Recall@10 at turn 5, with 95% bootstrap intervals over
seeds and episodes, the training time and interaction budget of each run, and each ablation's
paired difference from ``full`` (same seeds, same episodes). Writes ``dialog_retriever.md`` and
``.json`` in ``--out``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages are beside this folder
    sys.path.insert(0, str(ROOT))

from agents.checkpoints import load_dialog_retriever  # noqa: E402
from agents.dialog_retriever import DialogRetrieverAgent  # noqa: E402
from agents.evaluation import EpisodeSet, EvaluationResult, evaluate, metric_values  # noqa: E402
from benchmarks.report import machine_info, write_report  # noqa: E402
from dialog_env.cli import dataclass_parser  # noqa: E402
from dialog_env.env import DialogRetrievalEnv  # noqa: E402
from dialog_env.errors import ConfigurationError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: Trained variants: name -> extra ``train_agent.py`` options.
TRAINED = {
    "full": [],
    "last-turn": ["--retriever-history", "last"],
    "triplet": ["--retriever-loss", "triplet"],
}
#: Evaluated variants: name -> (trained variant, selection, history).
EVALUATED = {
    "full": ("full", "greedy", "all"),
    "last-turn": ("last-turn", "greedy", "last"),
    "triplet": ("triplet", "greedy", "all"),
    "split": ("full", "split", "all"),
}
#: What each row reports: (metric, turn).
MEASURES = (("success", 5), ("success", 10), ("recall@10", 5))


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """training seeds"""
    variants: list[str] = field(default_factory=lambda: list(EVALUATED))
    """evaluated variants (full, last-turn, triplet, split); full is always in: the ablations are paired with it"""
    iterations: int = 300
    """training iterations of every run (train_agent.py --retriever-iterations)"""
    episodes: int = 1000
    """test episodes (the same for every variant and seed)"""
    eval_seed: int = 2018
    """seed of the test episodes"""
    user: str = "rule"
    """user simulator of training and evaluation"""
    runs_dir: Path = ROOT / "runs" / "dialog-retriever"
    """where the run folders go (reused when complete)"""
    catalog: str | None = None
    """HDF5 catalogue (default: the synthetic one)"""
    resamples: int = 2000
    """bootstrap resamples"""
    quick: bool = False
    """a tiny catalogue and budget (seconds), for the smoke test"""
    out: Path = RESULTS
    """folder for dialog_retriever.md and dialog_retriever.json"""


def bootstrap(values: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, float]:
    """Mean of ``(S, E)`` values (seeds x episodes), 95% interval resampling seeds and episodes apart."""
    from benchmarks.compare_agents import bootstrap as seeds_and_episodes

    return seeds_and_episodes(values, rng, resamples)


def train(args: Args, variant: str, seed: int, quick_catalog: str | None) -> dict[str, Any]:
    """Train (or reuse) one run; returns its ``metrics.json`` with the seconds this call took."""
    run_name = f"{variant}-s{seed}"
    run_dir = args.runs_dir / run_name
    command = [
        sys.executable, str(ROOT / "train_agent.py"), "--agent", "dialog-retriever", "--seed", str(seed),
        "--run-name", run_name, "--runs-dir", str(args.runs_dir), "--no-progress", "--no-eval-random",
        "--retriever-iterations", str(args.iterations), "--eval-episodes", str(args.episodes),
        "--eval-seed", str(args.eval_seed), "--user", args.user, *TRAINED[variant],
    ]  # fmt: skip
    catalog = quick_catalog or args.catalog
    if catalog:
        command += ["--catalog", catalog]
    if args.quick:
        command += ["--batch-size", "8", "--train-turns", "3"]
    if (run_dir / "checkpoints" / "last.pt").exists():
        command.append("--resume")
    print(f"{run_name}: training ...", flush=True)
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        raise ConfigurationError(f"{' '.join(command)} failed:\n{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["call_seconds"] = time.perf_counter() - start
    return metrics


def run_benchmark(args: Args) -> dict[str, Any]:
    """Train every needed variant for every seed, evaluate all on the same episodes, summarise."""
    unknown = sorted(set(args.variants) - set(EVALUATED))
    if unknown:
        raise ConfigurationError(f"--variants: unknown {unknown}; known: {list(EVALUATED)}")
    variants = ["full", *[v for v in args.variants if v != "full"]]
    quick_catalog = None
    if args.quick:
        import dialog_env

        args.runs_dir.mkdir(parents=True, exist_ok=True)
        quick_catalog = str(args.runs_dir / "quick.h5")
        if not Path(quick_catalog).exists():
            dialog_env.make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7).save(quick_catalog)
    catalog = quick_catalog or args.catalog
    probe = DialogRetrievalEnv(catalog=catalog, split="test", user="rule")
    episodes = EpisodeSet.draw(probe.catalog.num_images, args.episodes, args.eval_seed)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    results: dict[str, list[EvaluationResult]] = {v: [] for v in variants}
    for variant in variants:
        trained_variant, selection, history = EVALUATED[variant]
        for seed in args.seeds:
            if seed not in runs.setdefault(trained_variant, {}):
                runs[trained_variant][seed] = train(args, trained_variant, seed, quick_catalog)
            path = args.runs_dir / f"{trained_variant}-s{seed}" / "checkpoints" / "final.pt"
            model = load_dialog_retriever(path, probe.catalog.dim, probe.vocabulary.words)
            agent = DialogRetrieverAgent(model, "cpu", name=variant, selection=selection, history=history)
            print(f"{variant} seed {seed}: evaluating on {len(episodes)} episodes ...", flush=True)
            env_kwargs = {"catalog": catalog, "split": "test", "user": args.user}
            results[variant].append(evaluate(agent, episodes, env_kwargs, max_turns=10, seed=args.eval_seed))
    rng = np.random.default_rng(args.eval_seed)
    rows = {}
    for variant in variants:
        trained_variant = EVALUATED[variant][0]
        row: dict[str, Any] = {"trained": trained_variant, "selection": EVALUATED[variant][1],
                               "history": EVALUATED[variant][2]}  # fmt: skip
        for metric, turn in MEASURES:
            values = _stacked(results[variant], metric, turn)
            row[f"{metric}@turn{turn}"] = bootstrap(values, rng, args.resamples)
            if variant != "full":
                difference = values - _stacked(results["full"], metric, turn)
                row[f"{metric}@turn{turn}_minus_full"] = bootstrap(difference, rng, args.resamples)
        trained_runs = runs[trained_variant]
        row["train_and_eval_seconds"] = [trained_runs[s]["wall_seconds"] for s in args.seeds]
        row["interaction_budget"] = [trained_runs[s]["results"]["dialog-retriever"]["interaction_budget"]
                                     for s in args.seeds]  # fmt: skip
        rows[variant] = row
    return {
        "command": "python benchmarks/dialog_retriever.py" + ("" if not sys.argv[1:] else " " + " ".join(sys.argv[1:])),
        "machine": machine_info(),
        "seeds": list(args.seeds),
        "episodes": {
            "count": len(episodes), "seed": args.eval_seed, "split": "test", "images": probe.catalog.num_images,
        },  # fmt: skip
        "iterations": args.iterations,
        "user": args.user,
        "variants": rows,
    }


def _stacked(results: list[EvaluationResult], metric: str, turn: int) -> np.ndarray:
    """``(S, E)`` values of one metric at one turn (1-based) over the seeds' evaluations."""
    return np.stack([metric_values(result)[metric][:, turn - 1].astype(np.float64) for result in results])


def _cell(value: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{value['mean'] * 100:{sign}.1f} [{value['low'] * 100:{sign}.1f}, {value['high'] * 100:{sign}.1f}]"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the variants' table and the paired ablation table."""
    episodes, machine = report["episodes"], report["machine"]
    lines = [
        "# The dialog retriever and its ablations",
        "",
        f"Command: `{report['command']}`. Machine: {machine['cpu']} ({machine['cpu_count']} cores). "
        f"Seeds {report['seeds']}; "
        f"{episodes['count']:,} test episodes (seed {episodes['seed']}, {episodes['images']:,} images), the same for "
        f"every variant and seed; user: {report['user']}; {report['iterations']} training iterations per run. Mean "
        "[95% bootstrap interval over seeds and episodes], in %.",
        "",
        "| variant | trained with | selection | success by turn 5 | success by turn 10 | R@10 at turn 5 | "
        "simulator calls | train + eval (s, per seed) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in report["variants"].items():
        trained = {"full": "contrastive, every turn", "last-turn": "contrastive, newest turn only",
                   "triplet": "triplet, every turn"}[row["trained"]]  # fmt: skip
        calls = sorted({b["simulator_calls"] for b in row["interaction_budget"]})
        seconds = ", ".join(f"{s:.0f}" for s in row["train_and_eval_seconds"])
        lines.append(
            f"| {name} | {trained} | {row['selection']} | {_cell(row['success@turn5'])} | "
            f"{_cell(row['success@turn10'])} | {_cell(row['recall@10@turn5'])} | "
            f"{', '.join(f'{c:,}' for c in calls)} | {seconds} |"
        )
    lines += [
        "",
        "Ablations: each variant minus `full`, paired over the same seeds and episodes (percentage points):",
        "",
        "| variant | success by turn 5 | success by turn 10 | R@10 at turn 5 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in report["variants"].items():
        if name == "full":
            continue
        cells = [_cell(row[f"{m}@turn{t}_minus_full"], signed=True) for m, t in MEASURES]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--quick``: 2 seeds, 3 iterations, 30 episodes) and write its report."""
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    if args.quick:
        args.seeds, args.iterations, args.episodes, args.resamples = args.seeds[:2], 3, 30, 200
    try:
        report = run_benchmark(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(args.out, "dialog_retriever", report, to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
