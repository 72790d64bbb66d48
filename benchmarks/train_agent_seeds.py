"""The main job over several seeds: ``python train_agent.py --seed S`` for each S, and the spread.

Run (about 5 min per seed on 2 cores)::

    .venv/bin/python benchmarks/train_agent_seeds.py

trains and evaluates the paper's agent with the README's main command for seeds 1..5 (each its
own run folder, ``runs/seeds/paper-sS``; finished runs are reused, so an interrupted benchmark
continues where it stopped) and writes ``benchmarks/results/train_agent_seeds.json``: per seed the
results of ``paper-stage1`` and ``paper-stage2`` at turns 5 and 10 and the run's wall time, and
over the seeds the mean, minimum, maximum and standard deviation of each. This is the spread the
README shows: exact digits differ across CPUs and BLAS builds, the spread is what to expect.
Extra arguments after ``--`` go to every ``train_agent.py`` run (e.g. ``-- --torch-threads 1``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: train_agent.py and the report writer live at the root
    sys.path.insert(0, str(ROOT))

import train_agent  # noqa: E402
from benchmarks.report import machine_info, write_report  # noqa: E402
from dialog_env.cli import dataclass_parser, split_passthrough  # noqa: E402

AGENTS = ("paper-stage1", "paper-stage2")
TURNS = (5, 10)
METRICS = ("shown_percentile", "success", "ranking_percentile", "recall@10", "recall@50")


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """training seeds (one run each)"""
    runs_dir: str = "runs/seeds"
    """where the run folders go (finished runs there are reused)"""
    out: str = str(ROOT / "benchmarks" / "results" / "train_agent_seeds.json")
    """the JSON report"""


def per_turn(metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{agent: {turn: {metric: mean}}}`` at :data:`TURNS` from a run's ``metrics.json``."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for agent in AGENTS:
        turns = {row["turn"]: row for row in metrics["results"][agent]["turns"]}
        table[agent] = {
            str(turn): {name: turns[turn][name]["mean"] for name in METRICS if name in turns[turn]} for turn in TURNS
        }
    return table


def spread(seeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean, min, max and standard deviation (``ddof=1``) over seeds of every agent, turn and metric."""
    summary: dict[str, Any] = {}
    for agent in AGENTS:
        summary[agent] = {}
        for turn in map(str, TURNS):
            summary[agent][turn] = {}
            for name in METRICS:
                values = np.array([run["results"][agent][turn][name] for run in seeds.values()])
                summary[agent][turn][name] = {
                    "mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
                    "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                }  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> None:
    """Run (or reuse) each seed's main job, then write the report."""
    argv, extra = split_passthrough(sys.argv[1:] if argv is None else list(argv))
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    if not args.seeds:
        parser.error("--seeds needs at least one seed")
    seeds: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        run_name = f"paper-s{seed}"
        metrics_path = Path(args.runs_dir) / run_name / "metrics.json"
        if metrics_path.is_file():
            print(f"seed {seed}: reusing {metrics_path}", flush=True)
        else:
            print(f"seed {seed}: python train_agent.py --seed {seed} {' '.join(extra)}".rstrip(), flush=True)
            started = time.time()
            code = train_agent.main(["--seed", str(seed), "--runs-dir", args.runs_dir, "--run-name", run_name, *extra])
            if code:
                raise SystemExit(f"seed {seed}: train_agent.py exited with {code}")
            print(f"seed {seed}: {time.time() - started:.0f} s", flush=True)
        metrics = json.loads(metrics_path.read_text())
        seeds[str(seed)] = {"results": per_turn(metrics), "wall_seconds": metrics.get("wall_seconds")}
    report = {
        "command": " ".join(["python benchmarks/train_agent_seeds.py", *sys.argv[1:]]),
        "main_command": "python train_agent.py --seed S " + " ".join(extra),
        "machine": machine_info(),
        "seeds": seeds,
        "summary": spread(seeds),
    }
    write_report(Path(args.out).parent, Path(args.out).stem, report)
    stage2 = report["summary"]["paper-stage2"]["10"]["success"]
    print(f"paper-stage2 success by turn 10 over seeds {args.seeds}: mean {100 * stage2['mean']:.1f}% "
          f"[{100 * stage2['min']:.1f}, {100 * stage2['max']:.1f}]", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
