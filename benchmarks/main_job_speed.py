"""The main job's time against a baseline commit's, side by side, and whether its results held.

Run (about 16 min on 2 cores with the default baseline)::

    .venv/bin/python benchmarks/main_job_speed.py -- --torch-threads 1

checks the baseline commit (default: the landed main that issue 17 measured, ``204c2e8``) out in a
temporary git worktree and runs the README's main job, ``python train_agent.py``, in it and in this
checkout, alternating (A B, A B... for ``--rounds``), with the same extra arguments (after
``--``) and the same environment, so that both see the same machine. Then it loads both runs'
final models and evaluates them with this checkout's code on the same test episodes, and reports
the paired difference of success (this checkout's model minus the baseline's) with a 95% paired
bootstrap interval: "no worse" means the interval does not lie below zero. Writes
``benchmarks/results/main_job_speed.md`` and ``.json`` (wall times, their ratio, each run's own
printed results, the paired differences, the machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the report writer is shared
    sys.path.insert(0, str(ROOT))

from agents.checkpoints import load_dialog_manager  # noqa: E402
from agents.dialog_manager import DialogManagerAgent  # noqa: E402
from agents.evaluation import EpisodeSet, evaluate, paired_difference  # noqa: E402
from benchmarks.report import machine_info, write_report  # noqa: E402
from dialog_env.cli import dataclass_parser  # noqa: E402
from dialog_env.env import DialogRetrievalEnv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TURNS = (5, 10)


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    baseline: str = "204c2e8"
    """commit whose train_agent.py is the baseline (A)"""
    rounds: int = 1
    """A B pairs of runs (the report gives medians)"""
    runs_dir: str = "runs/main-job-speed"
    """where the run folders go (absolute paths are passed to both sides)"""
    episodes: int = 1000
    """test episodes of the paired comparison (train_agent.py's default)"""
    eval_seed: int = 2018
    """seed of those episodes (train_agent.py's default)"""
    out: str = str(RESULTS)
    """folder for main_job_speed.md and .json"""


def git(*arguments: str) -> str:
    """Output of a git command in this checkout (raises on failure)."""
    return subprocess.run(["git", *arguments], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def run_main_job(checkout: Path, runs_dir: Path, extra: list[str]) -> dict[str, Any]:
    """``python train_agent.py --no-progress --runs-dir RUNS_DIR EXTRA`` in ``checkout``: wall time and results."""
    command = [sys.executable, "train_agent.py", "--no-progress", "--runs-dir", str(runs_dir), *extra]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        output = completed.stdout[-3000:] + completed.stderr[-3000:]
        raise SystemExit(f"{' '.join(command)} in {checkout} failed:\n{output}")
    (run,) = [path.parent for path in runs_dir.glob("*/metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())
    printed = {}
    for agent, result in metrics["results"].items():
        turns = {row["turn"]: row for row in result["turns"]}
        printed[agent] = {str(turn): turns[turn]["success"] for turn in TURNS if turn in turns}
    return {"wall_seconds": wall, "run": str(run), "success": printed}


def paired_comparison(baseline_run: Path, current_run: Path, episodes: int, eval_seed: int) -> dict[str, Any]:
    """Both final models evaluated with this checkout's code on the same episodes; success differences."""
    arguments = json.loads((current_run / "config.json").read_text())["args"]
    env_kwargs = {"catalog": arguments["catalog"], "user": arguments["user"], "split": arguments["eval_split"]}
    probe = DialogRetrievalEnv(**env_kwargs)
    episode_set = EpisodeSet.draw(probe.catalog.num_images, episodes, eval_seed)
    results = {}
    for side, run in (("baseline", baseline_run), ("current", current_run)):
        model = load_dialog_manager(run / "checkpoints" / "final.pt", probe.catalog.dim, probe.vocabulary.words)
        print(f"evaluating the {side} model ({run}) ...", flush=True)
        results[side] = evaluate(DialogManagerAgent(model, name=side), episode_set, env_kwargs,
                                 max_turns=max(TURNS), seed=eval_seed)  # fmt: skip
    return {
        "episodes": episodes,
        "eval_seed": eval_seed,
        "success": {side: {str(t): float(r.success[:, t - 1].mean()) for t in TURNS} for side, r in results.items()},
        "current_minus_baseline": {
            str(turn): paired_difference(results["current"], results["baseline"], "success", turn, seed=eval_seed)
            for turn in TURNS
        },
    }


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    a, b = report["baseline"], report["current"]
    lines = [
        "# The main job's time against a baseline commit",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} "
        f"cores. Main job: `python train_agent.py --no-progress {' '.join(report['extra'])}`, run alternately in a "
        f"worktree of the baseline `{a['commit']}` (A) and in this checkout `{b['commit']}` (B), {report['rounds']} "
        "round(s).",
        "",
        "| round | A wall s | B wall s | B / A |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for i, (ra, rb) in enumerate(zip(a["runs"], b["runs"], strict=True), start=1):
        lines.append(f"| {i} | {ra['wall_seconds']:.0f} | {rb['wall_seconds']:.0f} | "
                     f"{rb['wall_seconds'] / ra['wall_seconds']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"Median: A {report['median_wall_seconds']['baseline']:.0f} s, "
        f"B {report['median_wall_seconds']['current']:.0f} s, **B / A = {report['median_ratio']:.2f}**.",
        "",
        "Success of each run as it printed it (its own code), %:",
        "",
        "| run | agent | turn 5 | turn 10 |",
        "| --- | --- | ---: | ---: |",
    ]
    for side, label in (("baseline", "A"), ("current", "B")):
        for i, run in enumerate(report[side]["runs"], start=1):
            for agent, turns in run["success"].items():
                cells = " | ".join(f"{100 * turns[str(t)]['mean']:.1f} [{100 * turns[str(t)]['low']:.1f}, "
                                   f"{100 * turns[str(t)]['high']:.1f}]" for t in TURNS)  # fmt: skip
                lines.append(f"| {label}{i} | {agent} | {cells} |")
    paired = report["paired"]
    lines += [
        "",
        f"Paired comparison of the final models of round 1, both evaluated with B's code on the same "
        f"{paired['episodes']:,} test episodes (seed {paired['eval_seed']}): success of B's model minus A's, "
        "percentage points, with 95% paired bootstrap intervals:",
        "",
        "| turn | A | B | B - A |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for turn in map(str, TURNS):
        d = paired["current_minus_baseline"][turn]
        lines.append(f"| {turn} | {100 * paired['success']['baseline'][turn]:.1f} | "
                     f"{100 * paired['success']['current'][turn]:.1f} | "
                     f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the rounds, compare the models, write the report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    baseline_commit = git("rev-parse", "--short", args.baseline)
    current_commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        current_commit += " (with uncommitted changes)"
    runs_dir = Path(args.runs_dir).resolve()
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "baseline"
        git("worktree", "add", "--detach", str(worktree), baseline_commit)
        try:
            for round_number in range(1, args.rounds + 1):
                for side, checkout in (("baseline", worktree), ("current", ROOT)):
                    folder = runs_dir / f"{side}-r{round_number}"
                    if folder.exists():
                        raise SystemExit(f"{folder} exists: remove it or give another --runs-dir")
                    print(f"round {round_number}: {side} ({checkout}) ...", flush=True)
                    result = run_main_job(checkout, folder, extra)
                    print(f"  {result['wall_seconds']:.0f} s", flush=True)
                    runs[side].append(result)
        finally:
            git("worktree", "remove", "--force", str(worktree))
    paired = paired_comparison(
        Path(runs["baseline"][0]["run"]), Path(runs["current"][0]["run"]), args.episodes, args.eval_seed
    )
    medians = {side: float(np.median([r["wall_seconds"] for r in side_runs])) for side, side_runs in runs.items()}
    report = {
        "command": " ".join(["python benchmarks/main_job_speed.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "extra": extra,
        "rounds": args.rounds,
        "baseline": {"commit": baseline_commit, "runs": runs["baseline"]},
        "current": {"commit": current_commit, "runs": runs["current"]},
        "median_wall_seconds": medians,
        "median_ratio": medians["current"] / medians["baseline"],
        "paired": paired,
    }
    markdown = to_markdown(report)
    print(markdown)
    write_report(Path(args.out), "main_job_speed", report, markdown)


if __name__ == "__main__":
    main()
