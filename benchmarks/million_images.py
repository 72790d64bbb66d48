"""A million images: the synthetic catalogue streamed to HDF5, the environments, the paper's agent and its evaluation.

Each phase runs in its own process (this script with ``--phase``), so that its peak resident
memory (``ru_maxrss`` of that process, from ``os.wait4``) is its own:

1. ``write``: :func:`dialog_env.synthetic.write_synthetic_shoes` writes the catalogue
   (``--num-train`` + ``--num-test`` images, the default catalogue's generator and seed) to
   ``--catalog`` block by block. Skipped with ``--reuse`` when the file holds that catalogue.
2. ``env``: :meth:`Catalog.load` reads it; one ``DialogRetrievalEnv`` on the train split steps
   random images (ms per step); the native vector env steps ``--batch`` dialogs beside the bare
   ``B x N x D`` product of the same shape (:func:`benchmarks.env_speed.measure_cell`, the same
   cell as ``env_speed.md``'s rows; rank tables are off at this size, see
   :mod:`dialog_env.rank_table`).
3. ``train``: ``train_agent.py --catalog FILE`` trains the paper's agent for a short budget
   (``--pretrain-iterations``, ``--improve-iterations``; exact ranks in chunks throughout) and
   evaluates it on ``--episodes`` test dialogs with FAISS candidate generation (``--knn``).
4. ``evaluate``: the trained model evaluated again on the same episodes with exact candidate
   generation and with ``--knn``: time per evaluation and the paired difference in success.

The report (``million_images.json`` and ``.md`` in ``--out``) holds each phase's time and peak
memory, and the goal: every phase under 8 GB.

Usage::

    python benchmarks/million_images.py                  # 1,000,000 images (about 1 GB on disk)
    python benchmarks/million_images.py --quick          # seconds: 20,000 images, tiny budgets
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages are beside this folder
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402
from dialog_env.cli import dataclass_parser  # noqa: E402
from dialog_env.errors import ConfigurationError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PHASES = ("write", "env", "train", "evaluate")
#: The goal of issue 17: every phase's peak resident memory under this.
MEMORY_GOAL_GIB = 8.0
RESULT_PREFIX = "RESULT "


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    num_train: int = 500_000
    """images in the train split (the default catalogue's generator and seed)"""
    num_test: int = 500_000
    """images in the test split"""
    catalog: str = "runs/million/catalog.h5"
    """the HDF5 file written and read (about 1 KB per image at D = 256)"""
    reuse: bool = False
    """keep an existing --catalog file of the same size instead of writing it again"""
    batch: int = 128
    """dialogs of the vector env's timed steps"""
    min_time: float = 1.0
    """seconds each timed vector-env cell runs at least (``benchmarks/env_speed.py --min-time``)"""
    pretrain_iterations: int = 20
    """stage-1 iterations of the short training run"""
    improve_iterations: int = 1
    """stage-2 iterations of the short training run"""
    episodes: int = 300
    """evaluation episodes (test split), the same for every evaluation"""
    knn: str = "faiss-ivf"
    """the FAISS candidate generation compared with exact search"""
    runs_dir: str = "runs/million"
    """where the training run's folder goes"""
    run_name: str | None = None
    """the training run's folder name (default: paper-DATE-TIME, a new folder each time)"""
    seed: int = 1
    """training seed"""
    phase: str | None = None
    """(internal) run one phase in this process and print its result"""
    quick: bool = False
    """20,000 images, 3 + 1 iterations, 40 episodes: a smoke test of the pipeline"""
    out: str = str(RESULTS)
    """folder for million_images.md and .json"""


def parse_args(argv: list[str] | None = None) -> Args:
    """Command-line options, with ``--quick``'s sizes where the flags were not given."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = Args(**vars(dataclass_parser(Args, __doc__.splitlines()[0]).parse_args(argv)))
    if args.quick:
        given = {flag.split("=")[0] for flag in argv}
        quick = {"num_train": 12_000, "num_test": 8_000, "pretrain_iterations": 3, "improve_iterations": 1,
                 "episodes": 40, "batch": 32, "catalog": "runs/million-quick/catalog.h5",
                 "runs_dir": "runs/million-quick"}  # fmt: skip
        for name, value in quick.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    problems = [f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
                for name in ("num_train", "num_test", "batch", "pretrain_iterations", "episodes")
                if getattr(args, name) < 1]  # fmt: skip
    if not args.min_time > 0:
        problems.append(f"--min-time must be > 0, got {args.min_time}")
    if args.improve_iterations < 0:
        problems.append(f"--improve-iterations must be >= 0, got {args.improve_iterations}")
    if args.phase is not None and args.phase not in PHASES:
        problems.append(f"--phase must be one of {list(PHASES)}, got {args.phase!r}")
    if problems:
        raise ConfigurationError("; ".join(problems))
    return args


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, GiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---------------------------------------------------------------------------- the phases
def phase_write(args: Args) -> dict[str, Any]:
    """Write the catalogue to ``--catalog``, streamed."""
    from dialog_env.synthetic import SyntheticShoesConfig, write_synthetic_shoes

    path = Path(args.catalog)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_synthetic_shoes(path, SyntheticShoesConfig(num_train=args.num_train, num_test=args.num_test), progress=True)
    return {"seconds": time.perf_counter() - start, "file_bytes": path.stat().st_size}


def phase_env(args: Args) -> dict[str, Any]:
    """Load the catalogue; time single-env steps and the native vector env against the bare product."""
    from benchmarks import env_speed
    from dialog_env.catalog import Catalog
    from dialog_env.env import DialogRetrievalEnv

    start = time.perf_counter()
    catalog = Catalog.load(args.catalog)
    load_seconds = time.perf_counter() - start
    split = catalog.select("train")
    env = DialogRetrievalEnv(catalog=catalog, split="train", max_turns=10)
    env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    steps, start = 20, time.perf_counter()
    for action in rng.integers(split.num_images, size=steps):
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    single_ms = 1e3 * (time.perf_counter() - start) / steps
    env.close()
    cell_args = env_speed.Args(min_time=args.min_time, seed=args.seed)
    cell = env_speed.measure_cell(cell_args, catalog, split, args.batch, set())
    return {"load_seconds": load_seconds, "images": catalog.num_images, "train_images": split.num_images,
            "single_env_step_ms": single_ms, "vector_cell": cell}  # fmt: skip


def _train_command(args: Args) -> list[str]:
    return [sys.executable, str(ROOT / "train_agent.py"), "--catalog", str(Path(args.catalog).resolve()),
            "--pretrain-iterations", str(args.pretrain_iterations), "--improve-iterations",
            str(args.improve_iterations), "--eval-episodes", str(args.episodes), "--knn", args.knn,
            "--no-eval-random", "--no-progress", "--runs-dir", str(Path(args.runs_dir).resolve()),
            "--run-name", str(args.run_name), "--seed", str(args.seed)]  # fmt: skip


def phase_evaluate(args: Args) -> dict[str, Any]:
    """The trained model on the same episodes with exact search and with ``--knn``."""
    from agents.checkpoints import load_dialog_manager
    from agents.dialog_manager import DialogManagerAgent
    from agents.evaluation import EpisodeSet, evaluate, paired_difference
    from dialog_env.catalog import Catalog
    from dialog_env.env import DialogRetrievalEnv

    catalog = Catalog.load(args.catalog)
    probe = DialogRetrievalEnv(catalog=catalog, split="test")
    final = Path(args.runs_dir) / str(args.run_name) / "checkpoints" / "final.pt"
    model = load_dialog_manager(final, catalog.dim, probe.vocabulary.words)
    episodes = EpisodeSet.draw(probe.catalog.num_images, args.episodes, 2018)
    env_kwargs = {"catalog": catalog, "split": "test"}
    results, seconds, reset_seconds = {}, {}, {}
    for knn in ("exact", args.knn):
        agent = DialogManagerAgent(model, name=knn, knn=knn)
        start = time.perf_counter()  # what evaluate() pays once per batch: embed the split, build the index
        agent.reset(probe.catalog, 1)
        reset_seconds[knn] = time.perf_counter() - start
        start = time.perf_counter()
        results[knn] = evaluate(agent, episodes, env_kwargs, max_turns=10, seed=2018)
        seconds[knn] = time.perf_counter() - start
    return {
        "seconds": seconds,
        "reset_seconds": reset_seconds,
        # Turn 1 starts from the same state in both, so agreeing there is the index's recall@1 on real queries.
        "first_turn_same_share": float(
            (results[args.knn].shown_percentile[:, 0] == results["exact"].shown_percentile[:, 0]).mean()
        ),
        "success": {
            knn: {str(turn): float(r.success[:, turn - 1].mean()) for turn in (5, 10)} for knn, r in results.items()
        },  # fmt: skip
        "knn_minus_exact_success@10": paired_difference(results[args.knn], results["exact"], "success", 10, seed=2018),
        # The same image shown in a dialog's turn by both (the same percentile: ties aside, the same image).
        "same_shown_share": float((results[args.knn].shown_percentile == results["exact"].shown_percentile).mean()),
    }


def run_phase(args: Args) -> dict[str, Any]:
    """Run ``args.phase`` here; its result with this process's peak memory."""
    if args.phase == "train":  # the real command, in its own process
        child = run_child(_train_command(args))
        return {key: value for key, value in child.items() if key != "output"}
    result = {"write": phase_write, "env": phase_env, "evaluate": phase_evaluate}[args.phase](args)
    return {**result, "peak_rss_gib": peak_rss_gib()}


def run_child(command: list[str]) -> dict[str, Any]:
    """Run ``command``; its wall time, peak resident memory (``os.wait4``) and output's last lines."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print("    " + line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {process.returncode}")
    return {"wall_seconds": time.perf_counter() - start, "peak_rss_gib": usage.ru_maxrss / 2**20, "output": lines}


def phase_in_child(args: Args, phase: str, argv: list[str]) -> dict[str, Any]:
    """Run one phase as ``python benchmarks/million_images.py ARGV --phase PHASE``; its printed result."""
    print(f"{phase} ...", flush=True)
    child = run_child([sys.executable, str(Path(__file__).resolve()), *argv, "--phase", phase])
    (line,) = [line for line in child["output"] if line.startswith(RESULT_PREFIX)]
    result = json.loads(line.removeprefix(RESULT_PREFIX))
    return {**result, "process_peak_rss_gib": child["peak_rss_gib"], "process_wall_seconds": child["wall_seconds"]}


# ---------------------------------------------------------------------------- the report
def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report."""
    args, phases = report["args"], report["phases"]
    lines = [
        "# A million images",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']} ({report['machine']['cpu_count']} "
        f"cores). Catalogue: {args['num_train'] + args['num_test']:,} synthetic images "
        f"({args['num_train']:,} train, {args['num_test']:,} test), D = 256, written by "
        "`dialog_env.synthetic.write_synthetic_shoes`. Each phase ran in its own process; its peak is that "
        f"process's peak resident memory. Goal: every phase under {MEMORY_GOAL_GIB:.0f} GiB.",
        "",
        "| phase | what | time | peak memory (GiB) |",
        "| --- | --- | ---: | ---: |",
    ]
    if "write" in phases:
        write = phases["write"]
        lines.append(f"| write | catalogue to HDF5 ({write['file_bytes'] / 2**30:.2f} GiB), streamed | "
                     f"{write['seconds']:.0f} s | {write['process_peak_rss_gib']:.2f} |")  # fmt: skip
    env = phases["env"]
    cell = env["vector_cell"]
    lines += [
        f"| env | `Catalog.load` | {env['load_seconds']:.1f} s | {env['process_peak_rss_gib']:.2f} |",
        f"| env | one `DialogRetrievalEnv` step (N = {env['train_images']:,}) | {env['single_env_step_ms']:.0f} ms | |",
        f"| env | native vector step, B = {cell['B']} | {cell['native']['step_ms']:.0f} ms "
        f"({cell['native']['ratio_to_floor']:.2f}x the bare product, {cell['floor']['step_ms']:.0f} ms on "
        f"{cell['floor']['engine']}) | |",
    ]
    train = phases["train"]
    lines.append(f"| train | `train_agent.py`: {args['pretrain_iterations']} + {args['improve_iterations']} "
                 f"iterations, evaluation of {args['episodes']} dialogs with `--knn {args['knn']}` | "
                 f"{train['wall_seconds']:.0f} s | {train['peak_rss_gib']:.2f} |")  # fmt: skip
    evaluation = phases["evaluate"]
    for knn, seconds in evaluation["seconds"].items():
        success = evaluation["success"][knn]
        build = "" if knn == "exact" else " and building the index"
        lines.append(
            f"| evaluate | {args['episodes']} test dialogs, candidates by `{knn}`: success by turn 5 "
            f"{100 * success['5']:.1f}%, by turn 10 {100 * success['10']:.1f}% | {seconds:.0f} s (of which "
            f"{evaluation['reset_seconds'][knn]:.0f} s embedding the split{build}) | |"
        )
    lines[-1] = lines[-1][: -len("| |")] + f"| {evaluation['process_peak_rss_gib']:.2f} |"
    difference = evaluation["knn_minus_exact_success@10"]
    lines += [
        "",
        f"Success by turn 10, `{args['knn']}` minus exact on the same episodes: {100 * difference['mean']:+.1f} points "
        f"[{100 * difference['low']:+.1f}, {100 * difference['high']:+.1f}] (paired 95% bootstrap interval); "
        f"the two showed the same image at turn 1 (the same query: the index's recall@1) in "
        f"{100 * evaluation['first_turn_same_share']:.1f}% of the dialogs and in "
        f"{100 * evaluation['same_shown_share']:.1f}% of all turns (dialogs part once they show different images).",
        "",
        f"Largest peak: {report['largest_peak_gib']:.2f} GiB: goal (< {MEMORY_GOAL_GIB:.0f} GiB) "
        f"{'met' if report['largest_peak_gib'] < MEMORY_GOAL_GIB else 'NOT met'}.",
        "",
        "The short training budget shows that the pipeline runs at this size within the memory bound; it does not "
        "train a good agent (the per-turn figures are those of a few iterations).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every phase in its own process (or, with ``--phase``, one phase here) and write the report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.phase is not None:
        print(RESULT_PREFIX + json.dumps(run_phase(args)), flush=True)
        return 0
    started = time.time()
    command = "python benchmarks/million_images.py " + " ".join(argv)
    if args.run_name is None:  # one name for every phase's process
        args.run_name = time.strftime("paper-%Y%m%d-%H%M%S")
        argv = [*argv, "--run-name", args.run_name]
    phases: dict[str, Any] = {}
    path = Path(args.catalog)
    if not (args.reuse and path.exists() and _holds(path, args.num_train + args.num_test)):
        phases["write"] = phase_in_child(args, "write", argv)
    for phase in ("env", "train", "evaluate"):
        phases[phase] = phase_in_child(args, phase, argv)
    # The train phase's own process only waits for train_agent.py, whose peak it reports.
    peaks = [max(value.get("process_peak_rss_gib", 0.0), value.get("peak_rss_gib", 0.0)) for value in phases.values()]
    report = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "total_seconds": time.time() - started,
        "machine": machine_info(),
        "args": asdict(args),
        "phases": phases,
        "largest_peak_gib": max(peaks),
        "memory_goal_met": max(peaks) < MEMORY_GOAL_GIB,
    }
    write_report(Path(args.out), "million_images", report, to_markdown(report))
    print(f"largest peak {max(peaks):.2f} GiB; {report['total_seconds']:.0f} s in all", flush=True)
    return 0


def _holds(path: Path, num_images: int) -> bool:
    """Whether the HDF5 file at ``path`` has ``num_images`` feature rows."""
    import h5py

    with h5py.File(path, "r") as handle:
        return int(handle["features"].shape[0]) == num_images


if __name__ == "__main__":
    raise SystemExit(main())
