"""Soak test: a million steps of the native vector env, watching its memory for leaks.

Run (about 5 minutes on 2 cores)::

    python benchmarks/soak.py

writes ``benchmarks/results/soak.md`` and ``soak.json``. ``--quick`` runs 20,000 steps in seconds
(the smoke test in ``tests/test_soak_benchmark.py``); its verdict means little, because the
environment's bounded caches are still filling after so few steps.

What is measured, on ``DialogRetrievalVectorEnv`` (``gym.make_vec(..., vectorization_mode=
"vector_entry_point")``) over a small synthetic catalogue, ``B = --num-envs`` dialogs of
``--max-turns`` turns, random actions from a seeded generator (with probability ``--hit-rate`` a
dialog is shown its target, so that both episode ends and their autoresets occur):

1. **Untraced phase** (``--steps`` step calls, default 1,000,000), the environment as users run it.
   After ``--warmup`` steps, and then ``--samples`` times at regular intervals, the process's
   resident memory (RSS, from ``/proc/self/statm``) is read after ``gc.collect()``, with the number
   of objects the garbage collector tracks. Steps per second count only the stepping loop
   (environment step and action draws), not the samples.
2. **Traced phase** (``--traced-steps`` more steps, default 100,000). ``tracemalloc`` slows Python
   down about five-fold, so it is not on during the long phase: it starts here and the traced
   memory (what Python and NumPy allocated since the start of the phase and still hold) is read at
   the same number of samples. Before each reading the tokenizer's memo (a cache of at most 65,536
   captions, emptied when full: up to ~20 MiB) is emptied, so that the traced figure counts what
   the environment retains beyond that bounded cache. The lines that gained most are listed
   (``tracemalloc`` snapshot comparison).

A leak is flagged when RSS at the end exceeds RSS at the start (after warm-up) by more than
``--rss-threshold-mib``; when RSS grew by more than ``--late-rss-threshold-mib`` over the second
half of the untraced phase (a bounded cache fills early and stays; a leak keeps growing); or when
traced memory grew by more than ``--traced-threshold-mib`` over the traced phase. The bounded
caches (the token memo and the user simulator's ``functools`` caches) are reported at the start
and end of each phase.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from dialog_env import DialogRetrievalVectorEnv  # also registers DialogRetrieval-v0
from dialog_env.cli import dataclass_parser, parse_dataclass

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/soak.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MIB = 2**20
TOKEN_MEMO = "token memo (dialog_env.text.Vocabulary)"


@dataclass
class Args:
    """Soak settings (command-line flags of the same names)."""

    steps: int = 1_000_000
    """Vector-env step calls in the untraced phase."""
    traced_steps: int = 100_000
    """Step calls in the traced phase (tracemalloc on)."""
    warmup: int = 1_000
    """Steps before the first measurement."""
    samples: int = 20
    """Measurements after the first one, at regular intervals, in each phase."""
    num_envs: int = 8
    """Dialogs B of the vector env."""
    num_images: int = 1_000
    """Images N of the synthetic catalogue's train split, the one played."""
    dim: int = 64
    """Feature dimension D of the catalogue."""
    user: str = "rule"
    """User simulator."""
    max_turns: int = 10
    """Turns per dialog."""
    hit_rate: float = 0.05
    """Probability that a dialog is shown its target at a step (terminations as well as truncations)."""
    seed: int = 0
    """Seed of the catalogue, the dialogs and the actions."""
    rss_threshold_mib: float = 32.0
    """Leak if RSS at the end exceeds RSS after warm-up by more than this."""
    late_rss_threshold_mib: float = 8.0
    """Leak if RSS grew by more than this over the second half of the untraced phase."""
    traced_threshold_mib: float = 1.0
    """Leak if traced memory grew by more than this over the traced phase."""
    quick: bool = False
    """20,000 + 2,000 steps, for smoke tests."""
    out_dir: str = str(RESULTS)
    """Folder for soak.md and soak.json."""
    progress: bool = True
    """Show progress bars."""


def parse_args(argv: list[str] | None = None) -> Args:
    """The settings of the command line ``argv`` (default: ``sys.argv[1:]``); exits 2 on bad values."""
    parser = dataclass_parser(Args, __doc__.split("\n\n")[0])
    args, given = parse_dataclass(Args, parser, argv)
    if args.quick:  # smaller phases unless set explicitly
        for name, value in (("steps", 20_000), ("traced_steps", 2_000), ("samples", 10)):
            if name not in given:
                setattr(args, name, value)
    positive = ("steps", "traced_steps", "samples", "num_envs", "max_turns", "dim")
    problems = [f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
                for name in positive if getattr(args, name) < 1]  # fmt: skip
    if args.warmup < 0:
        problems.append(f"--warmup must be >= 0, got {args.warmup}")
    if args.num_images < 2:
        problems.append(f"--num-images must be >= 2, got {args.num_images}")
    if not 0.0 <= args.hit_rate <= 1.0:
        problems.append(f"--hit-rate must be in [0, 1], got {args.hit_rate}")
    if problems:
        parser.error("; ".join(problems))
    return args


# ---------------------------------------------------------------------- measurements
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Resident memory of this process now, in MiB (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE_SIZE / MIB


def max_rss_mib() -> float:
    """Highest resident memory of this process so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cache_sizes(envs: DialogRetrievalVectorEnv) -> dict[str, int]:
    """Entries of the environment's bounded caches: the token memo and every ``functools`` cache."""
    sizes = {}
    memo = getattr(envs.vocabulary, "_encoded", None)
    if memo is not None:
        sizes[TOKEN_MEMO] = len(memo)
    for module_name, module in sorted(sys.modules.items()):
        if module_name.split(".")[0] != "dialog_env" or module is None:
            continue
        for name, value in sorted(vars(module).items()):
            if callable(getattr(value, "cache_info", None)) and getattr(value, "__module__", None) == module_name:
                sizes[f"{module_name}.{name}"] = value.cache_info().currsize
    return sizes


def empty_token_memo(envs: DialogRetrievalVectorEnv) -> int:
    """Empty the tokenizer's memo (a cache: results do not change); returns how many entries it had."""
    memo = getattr(envs.vocabulary, "_encoded", None)
    if memo is None:
        return 0
    size = len(memo)
    memo.clear()
    return size


def slope_per_100k(points: list[tuple[int, float]]) -> float | None:
    """Least-squares growth of ``value`` per 100,000 steps over ``(step, value)`` points."""
    if len(points) < 2:
        return None
    steps, values = (np.array(column, dtype=np.float64) for column in zip(*points, strict=True))
    if np.ptp(steps) == 0:
        return None
    return float(np.polyfit(steps, values, 1)[0] * 100_000)


class Driver:
    """Steps the vector env with seeded random actions; counts completed dialogs."""

    def __init__(self, args: Args) -> None:
        catalog = make_synthetic_shoes(num_train=args.num_images, num_test=2, dim=args.dim, seed=args.seed)
        self.envs = gym.make_vec(
            "DialogRetrieval-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point", catalog=catalog,
            user=args.user, max_turns=args.max_turns, expose_target=True,
        )  # fmt: skip
        assert isinstance(self.envs, DialogRetrievalVectorEnv)
        self.num_images = self.envs.catalog.num_images
        self.hit_rate = args.hit_rate
        self.rng = np.random.default_rng(args.seed)
        _, infos = self.envs.reset(seed=args.seed)
        self.targets = infos["target_index"]
        self.steps = 0
        self.terminated = 0
        self.truncated = 0
        self.step_seconds = 0.0

    def run(self, steps: int, bar: Any = None) -> None:
        """``steps`` step calls; the time spent is added to :attr:`step_seconds`."""
        envs, rng, batch, num_images, hit_rate = self.envs, self.rng, self.envs.num_envs, self.num_images, self.hit_rate
        start = time.perf_counter()
        done = 0
        while done < steps:
            chunk = min(1_000, steps - done)
            for _ in range(chunk):
                actions = rng.integers(num_images, size=batch)
                actions = np.where(rng.random(batch) < hit_rate, self.targets, actions)
                _, _, terminations, truncations, infos = envs.step(actions)
                self.targets = infos["target_index"]
                self.terminated += int(terminations.sum())
                self.truncated += int(truncations.sum())
            done += chunk
            if bar is not None:
                bar.update(chunk)
        self.steps += steps
        self.step_seconds += time.perf_counter() - start


def schedule(total: int, samples: int) -> list[int]:
    """Step counts (after the phase's start) at which to measure: ``samples`` regular intervals."""
    samples = min(samples, total)
    return [round(total * k / samples) for k in range(1, samples + 1)]


def untraced_phase(args: Args, driver: Driver) -> dict[str, Any]:
    """Phase 1: ``--steps`` steps without tracemalloc, RSS and GC objects sampled; its JSON report."""
    caches_start = cache_sizes(driver.envs)

    def sample(step: int) -> dict[str, Any]:
        gc.collect()
        completed = driver.terminated + driver.truncated - ended_at_start
        return {"step": step, "seconds": round(driver.step_seconds - seconds_at_start, 3), "rss_mib": rss_mib(),
                "gc_objects": len(gc.get_objects()), "dialogs_completed": completed,
                "token_memo": cache_sizes(driver.envs).get(TOKEN_MEMO)}  # fmt: skip

    seconds_at_start, ended_at_start = driver.step_seconds, driver.terminated + driver.truncated
    records = [sample(0)]
    bar = tqdm(total=args.steps, desc="untraced phase", disable=not args.progress, mininterval=2.0, unit="step")
    done = 0
    for target in schedule(args.steps, args.samples):
        driver.run(target - done, bar)
        done = target
        records.append(sample(done))
    bar.close()
    seconds = driver.step_seconds - seconds_at_start
    rss = [record["rss_mib"] for record in records]
    middle = min(records, key=lambda record: abs(record["step"] - args.steps / 2))
    second_half = [(record["step"], record["rss_mib"]) for record in records if record["step"] >= middle["step"]]
    return {
        "steps": args.steps,
        "step_seconds": seconds,
        "steps_per_s": args.steps / seconds,
        "dialog_steps_per_s": args.steps * args.num_envs / seconds,
        "dialogs_completed": records[-1]["dialogs_completed"],
        "rss_start_mib": rss[0],
        "rss_end_mib": rss[-1],
        "rss_peak_sampled_mib": max(rss),
        "rss_middle_mib": middle["rss_mib"],
        "rss_middle_step": middle["step"],
        "rss_growth_mib": rss[-1] - rss[0],
        "rss_growth_second_half_mib": rss[-1] - middle["rss_mib"],
        "rss_growth_per_100k_mib": (rss[-1] - rss[0]) / args.steps * 100_000,
        "rss_slope_per_100k_mib": slope_per_100k([(r["step"], r["rss_mib"]) for r in records]),
        "rss_slope_second_half_per_100k_mib": slope_per_100k(second_half),
        "max_rss_mib": max_rss_mib(),
        "caches_start": caches_start,
        "caches_end": cache_sizes(driver.envs),
        "samples": records,
    }


def traced_phase(args: Args, driver: Driver) -> dict[str, Any]:
    """Phase 2: ``--traced-steps`` steps under tracemalloc, traced memory sampled; its JSON report."""
    caches_start = cache_sizes(driver.envs)

    def sample(step: int) -> dict[str, Any]:
        memo = empty_token_memo(driver.envs)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        return {"step": step, "seconds": round(driver.step_seconds - seconds_at_start, 3), "traced_mib": current / MIB,
                "traced_peak_mib": peak / MIB, "token_memo_emptied": memo}  # fmt: skip

    empty_token_memo(driver.envs)
    gc.collect()
    tracemalloc.start()
    seconds_at_start = driver.step_seconds
    records = [sample(0)]
    first = tracemalloc.take_snapshot()
    bar = tqdm(total=args.traced_steps, desc="traced phase", disable=not args.progress, mininterval=2.0, unit="step")
    done = 0
    for target in schedule(args.traced_steps, args.samples):
        driver.run(target - done, bar)
        done = target
        records.append(sample(done))
    bar.close()
    last = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib.*>")]
    growth = last.filter_traces(ignore).compare_to(first.filter_traces(ignore), "lineno")
    seconds = driver.step_seconds - seconds_at_start
    traced = [record["traced_mib"] for record in records]
    return {
        "steps": args.traced_steps,
        "step_seconds": seconds,
        "steps_per_s": args.traced_steps / seconds,
        "traced_start_mib": traced[0],
        "traced_end_mib": traced[-1],
        "traced_peak_mib": records[-1]["traced_peak_mib"],
        "traced_growth_mib": traced[-1] - traced[0],
        "traced_growth_per_100k_mib": (traced[-1] - traced[0]) / args.traced_steps * 100_000,
        "traced_slope_per_100k_mib": slope_per_100k([(r["step"], r["traced_mib"]) for r in records]),
        "top_growth": [
            {"where": f"{Path(stat.traceback[0].filename).name}:{stat.traceback[0].lineno}",
             "file": stat.traceback[0].filename, "kib": stat.size_diff / 1024, "blocks": stat.count_diff}
            for stat in growth[:5]
        ],  # fmt: skip
        "caches_start": caches_start,
        "caches_end": cache_sizes(driver.envs),
        "samples": records,
    }


def leak_checks(args: Args, untraced: dict[str, Any], traced: dict[str, Any]) -> list[dict[str, Any]]:
    """The three leak checks (RSS overall, RSS over the second half, traced memory) against their thresholds."""
    checks = [
        ("RSS at the end - RSS after warm-up", untraced["rss_growth_mib"], args.rss_threshold_mib),
        (f"RSS growth over the second half (steps {untraced['rss_middle_step']:,}-{args.steps:,})",
         untraced["rss_growth_second_half_mib"], args.late_rss_threshold_mib),
        ("traced memory growth over the traced phase (token memo emptied)", traced["traced_growth_mib"],
         args.traced_threshold_mib),
    ]  # fmt: skip
    return [{"check": name, "measured_mib": value, "threshold_mib": limit, "leak": value > limit}
            for name, value, limit in checks]  # fmt: skip


# ---------------------------------------------------------------------- report
def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report (``soak.md``) of :func:`main`'s JSON report."""
    args, untraced, traced = report["args"], report["untraced"], report["traced"]
    machine = report["machine"]
    verdict = "**leak flagged**" if report["leak"] else "no leak found"
    lines = [
        f"# Soak test: {args['steps']:,} vector-env steps",
        "",
        f"Command: `{report['command']}` ({report['date']}, {report['total_seconds']:.0f} s in all).",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, {machine['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
        + f". Load average at start / end: {report['load_start']} / {report['load_end']} (a shared machine).",
        "",
        f"`DialogRetrievalVectorEnv` with B = {args['num_envs']} dialogs of {args['max_turns']} turns over a synthetic "
        f"catalogue of N = {args['num_images']:,} images, D = {args['dim']}, user `{args['user']}`; random actions "
        f"(seed {args['seed']}), each dialog shown its target with probability {args['hit_rate']} per step. "
        f"Measurements start after {args['warmup']:,} warm-up steps.",
        "",
        f"## Verdict: {verdict}",
        "",
        "| check | measured (MiB) | threshold (MiB) | leak |",
        "| --- | ---: | ---: | --- |",
    ]
    for check in report["checks"]:
        leak = "**yes**" if check["leak"] else "no"
        lines.append(f"| {check['check']} | {check['measured_mib']:+.2f} | {check['threshold_mib']:.2f} | {leak} |")
    if args["quick"]:
        lines += ["", "Quick mode: too few steps for the bounded caches to fill; the verdict is not meaningful."]
    lines += [
        "",
        "## Untraced phase",
        "",
        f"{untraced['steps']:,} step calls in {untraced['step_seconds']:.1f} s: "
        f"**{untraced['steps_per_s']:,.0f} steps/s** ({untraced['dialog_steps_per_s']:,.0f} dialog-steps/s); "
        f"{untraced['dialogs_completed']:,} dialogs completed.",
        "",
        "| RSS | MiB |",
        "| --- | ---: |",
        f"| start (after warm-up) | {untraced['rss_start_mib']:.1f} |",
        f"| end | {untraced['rss_end_mib']:.1f} |",
        f"| peak of the samples | {untraced['rss_peak_sampled_mib']:.1f} |",
        f"| process peak so far (ru_maxrss, includes building the catalogue) | {untraced['max_rss_mib']:.1f} |",
        f"| growth, end - start | {untraced['rss_growth_mib']:+.2f} |",
        f"| growth per 100k steps, (end - start) / steps | {untraced['rss_growth_per_100k_mib']:+.3f} |",
        "| growth per 100k steps, least squares over the second half | "
        f"{_signed(untraced['rss_slope_second_half_per_100k_mib'])} |",
        "",
        "| step | stepping s | RSS MiB | gc-tracked objects | token memo entries | dialogs completed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in untraced["samples"]:
        lines.append(f"| {s['step']:,} | {s['seconds']:.1f} | {s['rss_mib']:.1f} | {s['gc_objects']:,} | "
                     f"{s['token_memo']:,} | {s['dialogs_completed']:,} |")  # fmt: skip
    lines += [
        "",
        "## Traced phase (tracemalloc)",
        "",
        f"{traced['steps']:,} more step calls with tracemalloc on, {traced['step_seconds']:.1f} s "
        f"({traced['steps_per_s']:,.0f} steps/s, slowed by tracing). Traced memory: allocations made since the "
        "phase started and still held, with the token memo emptied before each reading.",
        "",
        "| traced memory | MiB |",
        "| --- | ---: |",
        f"| start | {traced['traced_start_mib']:.3f} |",
        f"| end | {traced['traced_end_mib']:.3f} |",
        f"| peak (token memo included) | {traced['traced_peak_mib']:.1f} |",
        f"| growth, end - start | {traced['traced_growth_mib']:+.3f} |",
        f"| growth per 100k steps | {traced['traced_growth_per_100k_mib']:+.3f} |",
        "",
        "| step | traced MiB | token memo entries emptied |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {s['step']:,} | {s['traced_mib']:.3f} | {s['token_memo_emptied']:,} |" for s in traced["samples"]]
    lines += ["", "Lines holding most of the growth (end against start of the phase):", "",
              "| where | KiB | blocks |", "| --- | ---: | ---: |"]  # fmt: skip
    lines += [f"| `{g['where']}` | {g['kib']:+.1f} | {g['blocks']:+,} |" for g in traced["top_growth"]]
    lines += ["", "## Bounded caches (entries)", ""]
    lines += ["| cache | untraced start | untraced end | traced start | traced end |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name in untraced["caches_end"]:
        values = [phase[key].get(name, 0) for phase in (untraced, traced) for key in ("caches_start", "caches_end")]
        lines.append(f"| `{name}` | " + " | ".join(f"{v:,}" for v in values) + " |")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run both phases; write ``soak.json`` and ``.md``; print the verdict."""
    args = parse_args(argv)
    started = time.time()
    load_start = os.getloadavg()
    print(f"soak: {args.steps:,} + {args.traced_steps:,} traced steps, B = {args.num_envs}, N = {args.num_images:,}, "
          f"D = {args.dim}, user {args.user}", flush=True)  # fmt: skip
    driver = Driver(args)
    driver.run(args.warmup)
    untraced = untraced_phase(args, driver)
    print(f"untraced: {untraced['steps_per_s']:,.0f} steps/s, RSS {untraced['rss_start_mib']:.1f} -> "
          f"{untraced['rss_end_mib']:.1f} MiB (peak {untraced['rss_peak_sampled_mib']:.1f})", flush=True)  # fmt: skip
    traced = traced_phase(args, driver)
    print(f"traced: {traced['traced_start_mib']:.3f} -> {traced['traced_end_mib']:.3f} MiB", flush=True)
    driver.envs.close()
    checks = leak_checks(args, untraced, traced)
    machine = machine_info()
    machine["versions"].pop("faiss", None)  # not used here
    report = {
        "command": " ".join(["python", "benchmarks/soak.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "total_seconds": time.time() - started,
        "machine": machine,
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "args": asdict(args),
        "total_steps": driver.steps,
        "dialogs_completed": {"terminated": driver.terminated, "truncated": driver.truncated},
        "untraced": untraced,
        "traced": traced,
        "checks": checks,
        "leak": any(check["leak"] for check in checks),
        "notes": [
            "RSS is read from /proc/self/statm after gc.collect(); the first reading follows the warm-up, so "
            "imports, the catalogue and the ranker's scratch memory are already in it.",
            "The tokenizer's memo (dialog_env.text, at most 65,536 captions, emptied when full) fills during the "
            "first tens of thousands of steps and makes RSS grow by up to ~20 MiB; memory freed when it is emptied "
            "is reused by the next entries, so RSS then stays flat. This is why the RSS checks allow some growth "
            "from the start, and why the second-half check is the sensitive one.",
            "tracemalloc slows Python down about five-fold here, so it runs in a separate, shorter phase after the "
            "untraced one, on the same environment; its readings empty the token memo first (a cache: results "
            "do not change), so the traced growth is what the environment retains beyond that bounded cache. "
            "The user simulator's functools caches are keyed by attribute values, so they are bounded too; "
            "their sizes are in the last table.",
            "Steps per second include drawing the random actions (about 3% of a step) and exclude the "
            "measurements.",
        ],
    }
    write_report(Path(args.out_dir), "soak", report, to_markdown(report))
    verdict = "LEAK FLAGGED" if report["leak"] else "no leak found"
    print(f"soak: {verdict} in {report['total_seconds']:.0f} s", flush=True)
    for check in checks:
        print(f"  {check['check']}: {check['measured_mib']:+.2f} MiB (threshold {check['threshold_mib']}) "
              f"-> {'leak' if check['leak'] else 'ok'}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
