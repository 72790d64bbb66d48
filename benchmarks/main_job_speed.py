"""The main job's time against a baseline commit's, side by side, and whether its results held.

Run (about 40 min on 2 cores with the default baseline and five seeds)::

    .venv/bin/python benchmarks/main_job_speed.py --parallel -- --torch-threads 1

checks the baseline commit (default: the landed main that issue 17 measured, ``204c2e8``) out in a
temporary git worktree and, for each of ``--seeds``, runs the README's main job, ``python
train_agent.py --seed S``, in it (A) and in this checkout (B), with the same extra arguments
(after ``--``) and the same environment: one after the other (A then B), or with ``--parallel``
at the same time, one process per core (so both see the same machine load; give each one thread,
e.g. ``-- --torch-threads 1``). Then it loads each seed's two final models and evaluates them with
this checkout's code on the same test episodes. ``--reuse`` takes runs already finished in
``--runs-dir`` (an interrupted benchmark continues; a report can be rebuilt).

Two questions, two answers: **time**, the median over seeds of B's wall time over A's (each run's
own clock, ``metrics.json``'s ``wall_seconds``: from ``train_agent.py``'s start to its metrics
written; in parallel mode the side that finishes first leaves the other a quieter machine); and
**results**, success by turns 5 and 10 of B's models against A's. One seed's paired difference on
the same episodes measures evaluation noise only: any change of floating-point rounding sends
training elsewhere (different seeds of the same code differ by several points), so the verdict
"no worse" is taken over seeds: the mean over seeds of each seed's paired difference, with a 95%
bootstrap interval over seeds (a percentile bootstrap of the mean; with few seeds a rough one),
beside each seed's paired interval on the episodes. Writes
``benchmarks/results/main_job_speed.md`` and ``.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
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
from dialog_env.cli import dataclass_parser, split_passthrough  # noqa: E402
from dialog_env.env import DialogRetrievalEnv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TURNS = (5, 10)


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    baseline: str = "204c2e8"
    """commit whose train_agent.py is the baseline (A)"""
    seeds: list[int] = field(default_factory=lambda: [1])
    """training seeds: one A run and one B run each"""
    parallel: bool = False
    """run each seed's A and B at the same time (one process per core) instead of one after the other"""
    reuse: bool = False
    """take runs already finished in --runs-dir (their metrics.json) instead of refusing the folder"""
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


def start_main_job(checkout: Path, runs_dir: Path, seed: int, extra: list[str]) -> subprocess.Popen:
    """Start ``python train_agent.py --no-progress --seed SEED --runs-dir RUNS_DIR EXTRA`` in ``checkout``."""
    command = [sys.executable, "train_agent.py", "--no-progress", "--seed", str(seed), "--runs-dir", str(runs_dir),
               *extra]  # fmt: skip
    return subprocess.Popen(command, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_main_job(process: subprocess.Popen | None, runs_dir: Path) -> dict[str, Any]:
    """Wait for a started main job (``None``: a finished run reused); its time and the success it printed.

    The time is the run's own clock (``metrics.json``'s ``wall_seconds``: from ``train_agent.py``'s
    start, imports done, to its metrics written), the same definition on both sides whether the
    runs went in turn or in parallel.
    """
    if process is not None:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(process.args)} failed:\n{output[-6000:]}")
    (run,) = [path.parent for path in runs_dir.glob("*/metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())
    wall = float(metrics["wall_seconds"])
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


def over_seeds(differences: list[float], seed: int = 0, resamples: int = 10_000) -> dict[str, float]:
    """Mean of per-seed differences with a 95% percentile-bootstrap interval over seeds."""
    values = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(values.size, size=(resamples, values.size))].mean(axis=1)
    return {"mean": float(values.mean()), "low": float(np.quantile(means, 0.025)),
            "high": float(np.quantile(means, 0.975)), "seeds": int(values.size)}  # fmt: skip


def _interval(value: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{100 * value['mean']:{sign}.1f} [{100 * value['low']:{sign}.1f}, {100 * value['high']:{sign}.1f}]"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    a, b = report["baseline"], report["current"]
    mode = "at the same time, one process per core" if report["parallel"] else "one after the other (A then B)"
    lines = [
        "# The main job's time against a baseline commit",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} "
        f"cores. Main job: `python train_agent.py --no-progress --seed S {' '.join(report['extra'])}`, for each seed "
        f"in a worktree of the baseline `{a['commit']}` (A) and in this checkout `{b['commit']}` (B), {mode}. "
        "Wall time: each run's own clock (`metrics.json`'s `wall_seconds`)"
        + (f"; reused runs: {', '.join(report['reused_runs'])}." if report["reused_runs"] else "."),
        "",
        "| seed | A wall s | B wall s | B / A | A success@10 | B success@10 | B - A, same episodes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seed, ra, rb, paired in zip(report["seeds"], a["runs"], b["runs"], report["paired"], strict=True):
        lines.append(
            f"| {seed} | {ra['wall_seconds']:.0f} | {rb['wall_seconds']:.0f} | "
            f"{rb['wall_seconds'] / ra['wall_seconds']:.2f} | {100 * paired['success']['baseline']['10']:.1f} | "
            f"{100 * paired['success']['current']['10']:.1f} | "
            f"{_interval(paired['current_minus_baseline']['10'], True)} |"
        )
    lines += [
        "",
        f"**Time:** median A {report['median_wall_seconds']['baseline']:.0f} s, "
        f"B {report['median_wall_seconds']['current']:.0f} s, **B / A = {report['median_ratio']:.2f}** "
        f"(per seed {', '.join(f'{r:.2f}' for r in report['ratios'])}).",
        "",
        "**Results:** both models of each seed evaluated with B's code on the same "
        f"{report['paired'][0]['episodes']:,} test episodes (seed {report['paired'][0]['eval_seed']}); success, %, "
        "mean over seeds of B's model minus A's with a 95% bootstrap interval over seeds (percentile "
        "bootstrap of the mean; rough with few seeds):",
        "",
        "| turn | A mean over seeds | B mean over seeds | B - A over seeds |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for turn in map(str, TURNS):
        summary = report["over_seeds"][turn]
        lines.append(f"| {turn} | {100 * summary['baseline']:.1f} | {100 * summary['current']:.1f} | "
                     f"{_interval(summary['current_minus_baseline'], True)} |")  # fmt: skip
    lines += ["", "Success as each run printed it (its own code), %:", "",
              "| seed | side | agent | turn 5 | turn 10 |", "| ---: | --- | --- | ---: | ---: |"]  # fmt: skip
    for side, label in (("baseline", "A"), ("current", "B")):
        for seed, run in zip(report["seeds"], report[side]["runs"], strict=True):
            for agent, turns in run["success"].items():
                cells = " | ".join(_interval(turns[str(t)]) for t in TURNS)
                lines.append(f"| {seed} | {label} | {agent} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run every seed on both sides, compare the models, write the report."""
    argv, extra = split_passthrough(sys.argv[1:] if argv is None else list(argv))
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    if not args.seeds or "--seed" in extra:
        parser.error("give the seeds with --seeds (at least one), not after --")
    baseline_commit = git("rev-parse", "--short", args.baseline)
    current_commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        current_commit += " (with uncommitted changes)"
    runs_dir = Path(args.runs_dir).resolve()
    reused: set[tuple[str, int]] = set()
    for seed in args.seeds:
        for side in ("baseline", "current"):
            folder = runs_dir / f"{side}-s{seed}"
            if args.reuse and list(folder.glob("*/metrics.json")):
                reused.add((side, seed))
            elif folder.exists():
                raise SystemExit(f"{folder} exists (unfinished, or no --reuse): remove it or give another --runs-dir")
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "baseline"
        git("worktree", "add", "--detach", str(worktree), baseline_commit)
        try:
            for seed in args.seeds:
                started: dict[str, subprocess.Popen | None] = {}
                for side, checkout in (("baseline", worktree), ("current", ROOT)):
                    folder = runs_dir / f"{side}-s{seed}"
                    if (side, seed) in reused:
                        print(f"seed {seed}: {side}: reusing {folder}", flush=True)
                        started[side] = None
                    else:
                        print(f"seed {seed}: {side} ({checkout}) ...", flush=True)
                        started[side] = start_main_job(checkout, folder, seed, extra)
                    if not args.parallel:
                        runs[side].append(finish_main_job(started.pop(side), folder))
                for side, process in started.items():
                    runs[side].append(finish_main_job(process, runs_dir / f"{side}-s{seed}"))
                for side in ("baseline", "current"):
                    print(f"  seed {seed}, {side}: {runs[side][-1]['wall_seconds']:.0f} s", flush=True)
        finally:
            git("worktree", "remove", "--force", str(worktree))
    paired = [
        paired_comparison(Path(a["run"]), Path(b["run"]), args.episodes, args.eval_seed)
        for a, b in zip(runs["baseline"], runs["current"], strict=True)
    ]
    ratios = [b["wall_seconds"] / a["wall_seconds"] for a, b in zip(runs["baseline"], runs["current"], strict=True)]
    medians = {side: float(np.median([r["wall_seconds"] for r in side_runs])) for side, side_runs in runs.items()}
    summary = {
        str(turn): {
            "baseline": float(np.mean([p["success"]["baseline"][str(turn)] for p in paired])),
            "current": float(np.mean([p["success"]["current"][str(turn)] for p in paired])),
            "current_minus_baseline": over_seeds([p["current_minus_baseline"][str(turn)]["mean"] for p in paired]),
        }
        for turn in TURNS
    }
    report = {
        "command": " ".join(["python benchmarks/main_job_speed.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "extra": extra,
        "seeds": args.seeds,
        "parallel": args.parallel,
        "reused_runs": sorted(f"{side}-s{seed}" for side, seed in reused),
        "baseline": {"commit": baseline_commit, "runs": runs["baseline"]},
        "current": {"commit": current_commit, "runs": runs["current"]},
        "ratios": ratios,
        "median_wall_seconds": medians,
        "median_ratio": medians["current"] / medians["baseline"],
        "paired": paired,
        "over_seeds": summary,
    }
    markdown = to_markdown(report)
    print(markdown)
    write_report(Path(args.out), "main_job_speed", report, markdown)


if __name__ == "__main__":
    main()
