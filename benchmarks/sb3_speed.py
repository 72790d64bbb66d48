"""SB3 at native speed: PPO ``learn()`` throughput over the native vector env against ``DummyVecEnv``.

For each number of dialogs ``n`` (``--n-envs``), one SB3 PPO model (the project's ``ppo`` row of
``agents.sb3.MODEL_SPECS``, with ``n_steps`` chosen so that a rollout holds ``--rollout-steps``
transitions whatever ``n`` is) learns for ``--rollouts`` rollouts, once on
:class:`agents.sb3_vec.NativeDialogVecEnv` and once on SB3's ``DummyVecEnv`` over ``n``
``Monitor``-wrapped single environments, one after the other (repeated ``--repeats`` times,
alternating, medians reported). The whole loop is timed (environment steps per second of wall
time), and split into where the time goes:

- ``env``: inside the vector environment's ``step_wait`` and ``reset``;
- ``update``: inside PPO's ``train()`` (the gradient steps);
- ``policy``: the rest of the loop (policy forward passes, buffer writes, SB3's bookkeeping).

Both learn from the same transitions (``tests/test_sb3_vec.py``), so the ratio is the price of
stepping single environments in Python. Writes ``benchmarks/results/sb3_speed.md`` and ``.json``.

Usage::

    python benchmarks/sb3_speed.py                  # n in 8, 64, 256 on the default catalogue
    python benchmarks/sb3_speed.py --quick          # seconds: a smoke test
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.sb3 import make_model
from agents.sb3_vec import NativeDialogVecEnv
from dialog_env.cli import dataclass_parser
from dialog_env.env import DialogRetrievalEnv, make_catalog

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/sb3_speed.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("native", "dummy")


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    n_envs: list[int] = field(default_factory=lambda: [8, 64, 256])
    """Numbers of dialogs stepped together."""
    rollout_steps: int = 2048
    """Transitions per PPO rollout (n_steps = rollout_steps / n_envs, at least 8)."""
    rollouts: int = 3
    """Rollouts (and updates) timed per measurement."""
    repeats: int = 3
    """Measurements per (n_envs, env kind), alternating native and dummy; medians are reported."""
    max_turns: int = 5
    """Turns per training dialog."""
    seed: int = 0
    """Seed of the models and of the environments' first resets."""
    quick: bool = False
    """Tiny settings for a smoke test (a small catalogue, n in 2, 4, one short rollout)."""
    out: Path = RESULTS
    """Folder for sb3_speed.md and sb3_speed.json."""


def _timed(function: Callable[..., Any], bucket: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            bucket[0] += time.perf_counter() - start

    return wrapper


def make_env(kind: str, n_envs: int, env_kwargs: dict[str, Any]) -> VecEnv:
    """The training VecEnv of one kind: ``"native"`` or ``"dummy"`` (over monitored single envs)."""
    if kind == "native":
        return NativeDialogVecEnv(n_envs, **env_kwargs)
    return DummyVecEnv([lambda: Monitor(DialogRetrievalEnv(**env_kwargs)) for _ in range(n_envs)])


def measure(kind: str, n_envs: int, args: Args, env_kwargs: dict[str, Any]) -> dict[str, float]:
    """One timed ``learn()``: its throughput and where its time went."""
    envs = make_env(kind, n_envs, env_kwargs)
    envs.seed(args.seed)
    n_steps = max(8, args.rollout_steps // n_envs)
    batch_size = min(256, n_steps * n_envs)
    model = make_model("ppo", envs, n_steps=n_steps, batch_size=batch_size, seed=args.seed, device="cpu")
    env_time, update_time = [0.0], [0.0]
    envs.step_wait = _timed(envs.step_wait, env_time)  # type: ignore[method-assign]
    envs.reset = _timed(envs.reset, env_time)  # type: ignore[method-assign]
    model.train = _timed(model.train, update_time)  # type: ignore[method-assign]
    timesteps = args.rollouts * n_steps * n_envs
    start = time.perf_counter()
    model.learn(timesteps)
    wall = time.perf_counter() - start
    envs.close()
    return {
        "timesteps": model.num_timesteps,
        "wall_s": wall,
        "steps_per_s": model.num_timesteps / wall,
        "env_s": env_time[0],
        "update_s": update_time[0],
        "policy_s": wall - env_time[0] - update_time[0],
    }


def run(args: Args) -> dict[str, Any]:
    """Every (n_envs, kind) measurement, repeated and alternated; medians and native/dummy ratios."""
    catalog = make_catalog({"num_train": 300, "num_test": 50, "dim": 16, "seed": 1} if args.quick else None)
    env_kwargs = {"catalog": catalog, "max_turns": args.max_turns}
    rows = []
    for n_envs in args.n_envs:
        samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for repeat in range(args.repeats):
            for kind in KINDS:
                print(f"n_envs {n_envs}, {kind}, repeat {repeat + 1}/{args.repeats} ...", flush=True)
                samples[kind].append(measure(kind, n_envs, args, env_kwargs))
        row: dict[str, Any] = {"n_envs": n_envs}
        for kind in KINDS:
            row[kind] = {key: statistics.median(s[key] for s in samples[kind]) for key in samples[kind][0]}
        ratios = [n["steps_per_s"] / d["steps_per_s"] for n, d in zip(samples["native"], samples["dummy"], strict=True)]
        row["speedup_median"] = statistics.median(ratios)
        row["speedups"] = ratios
        rows.append(row)
    return {"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "out"}}


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: throughput, speed-up and the time split per kind."""
    lines = [
        "# SB3 PPO `learn()` throughput: native vector env against DummyVecEnv",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']} ({report['machine']['cpu_count']} "
        f"cores). Medians of {report['settings']['repeats']} alternating measurements; the speed-up is the "
        "median of the paired ratios (native / dummy environment steps per second of the whole loop).",
        "",
        "| n_envs | env | steps/s | speed-up | env s | policy s | update s | wall s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        for kind in KINDS:
            cell = row[kind]
            speedup = f"{row['speedup_median']:.2f}x" if kind == "native" else ""
            lines.append(
                f"| {row['n_envs']} | {kind} | {cell['steps_per_s']:,.0f} | {speedup} | {cell['env_s']:.2f} | "
                f"{cell['policy_s']:.2f} | {cell['update_s']:.2f} | {cell['wall_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the report."""
    parser = dataclass_parser(Args, "SB3 PPO throughput: native vector env vs DummyVecEnv.")
    args = Args(**vars(parser.parse_args(argv)))
    if args.quick:
        args.n_envs, args.rollout_steps, args.rollouts, args.repeats = [2, 4], 64, 1, 1
    start = time.perf_counter()
    report = run(args)
    report["command"] = "python benchmarks/sb3_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["wall_seconds"] = time.perf_counter() - start
    report["machine"] = machine_info()
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "sb3_speed", report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
