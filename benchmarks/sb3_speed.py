"""SB3 at native speed: PPO ``learn()`` throughput over the native vector env against ``DummyVecEnv``.

For each PPO agent (``--agents``: ``ppo``, catalogue-index actions, and ``ppo-query``, query-vector
actions, the project's rows of ``agents.sb3.MODEL_SPECS``) and each number of dialogs ``n``
(``--n-envs``), one SB3 PPO model (with ``n_steps`` chosen so that a rollout holds
``--rollout-steps`` transitions whatever ``n`` is) learns for ``--rollouts`` rollouts, once on
:class:`agents.sb3_vec.NativeDialogVecEnv` (``action="index"`` or ``"query"``) and once on SB3's
``DummyVecEnv`` over ``n`` ``Monitor``-wrapped single environments (wrapped in ``QueryAction`` for
``ppo-query``), one after the other (repeated ``--repeats`` times, alternating, medians
reported). The whole loop is timed (environment steps per second of wall time), and split into where the time goes:

- ``env``: inside the vector environment's ``step_wait`` and ``reset``;
- ``update``: inside PPO's ``train()`` (the gradient steps);
- ``policy``: the rest of the loop (policy forward passes, SB3's per-dialog value bootstraps of
  truncated dialogs, buffer writes, SB3's bookkeeping).

Both learn from the same transitions (``tests/test_sb3_vec.py``), so the ratio is the price of
stepping single environments in Python. Since the policy and update costs are the same for both
kinds, the ratio can never exceed ``env s`` of DummyVecEnv over ``env s`` of the native env (the
"env ratio" column): that is the ceiling the policy side approaches as it gets cheaper.

**Index against query actions.** With index actions PPO's update is dominated by the policy's
``64 x N`` action head (an ``N``-way softmax, its gradient and Adam over it, ``N = 10,000`` on the
default catalogue), the same for both kinds: the whole loop's ratio stays well under the env
ratio. A query agent's head is ``D``-dimensional, so its update is small and the whole loop gains
close to what the environment gains. Both kinds find the image shown for a query and the target's
rank w.r.t. the query from one product (:meth:`dialog_env.ranking.Ranker.nearest_and_query_ranks`):
the native env for all dialogs at once, ``QueryAction`` once per dialog.

**Rank tables.** With ``--rank-table`` (the default) every environment of both kinds looks the
target's rank w.r.t. the shown image (a catalogue row) up in the split's exact rank table
(:mod:`dialog_env.rank_table`, built once per process before the timings and shared; what
``make_training_env(agent, env_kwargs={"rank_table": True})`` gives a training run);
``--no-rank-table`` computes them with the product. The table changes no number.

**Threads.** NumPy's OpenBLAS (the environments' ranking) and torch (the policy) each keep a pool of
one thread per core, and an idle OpenBLAS thread spins for a while after each call: on a machine
with few cores the two pools then take the cores from each other, and PPO's loop runs several times
slower (issue 14: 1.22x -> 1.72x at ``n=64`` from ``OPENBLAS_NUM_THREADS=1`` alone). The benchmark
therefore runs with ``--blas-threads 1`` (set in-process through OpenBLAS's own
``openblas_set_num_threads``, :func:`numpy_blas_threads`) and ``--torch-threads 1`` (what
``train_agent.py`` gives the SB3 agents, :func:`agents.training.torch_threads_for`), the same for
both kinds; the report records the thread counts in effect.

``--policy sb3`` measures with SB3's own ``MultiInputPolicy`` instead of the project's
(:class:`agents.sb3_policies.FastCategoricalMultiInputPolicy`, which ``make_model`` gives PPO), to
see what the project's categorical sampler saves.

Usage::

    python benchmarks/sb3_speed.py                  # n in 8, 64, 256 on the default catalogue
    python benchmarks/sb3_speed.py --quick          # seconds: a smoke test
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.sb3 import MODEL_SPECS, make_model, model_hyperparameters
from agents.sb3_vec import NativeDialogVecEnv
from dialog_env.cli import dataclass_parser
from dialog_env.env import DialogRetrievalEnv, make_catalog
from dialog_env.errors import ConfigurationError
from dialog_env.wrappers import QueryAction

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/sb3_speed.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("native", "dummy")
#: ``--agents`` choices: PPO on catalogue-index actions and on query-vector actions.
AGENTS = ("ppo", "ppo-query")
#: ``--policy`` choices: the project's ``make_model`` policy, or SB3's ``MultiInputPolicy``.
POLICIES = ("project", "sb3")
#: Thread variables read at start-up, recorded in the report.
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    agents: list[str] = field(default_factory=lambda: list(AGENTS))
    """PPO agents measured: ``ppo`` (index actions), ``ppo-query`` (query actions)."""
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
    rank_table: bool = True
    """Both kinds rank shown images by the split's exact rank table (built once, before the timings)."""
    seed: int = 0
    """Seed of the models and of the environments' first resets."""
    blas_threads: int = 1
    """NumPy's OpenBLAS threads during the measurements (the environments' ranking); 0: as they are."""
    torch_threads: int = 1
    """Torch CPU threads during the measurements (the policy); 0: as they are (one per core)."""
    policy: str = "project"
    """``project``: the policy ``make_model`` gives PPO; ``sb3``: SB3's ``MultiInputPolicy``."""
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


def _openblas_libraries() -> list[tuple[str, Any, Any]]:
    """The OpenBLAS libraries loaded in this process: ``(path, set_num_threads, get_num_threads)``.

    Found the way ``threadpoolctl`` finds them (not installed here): the loaded shared objects
    whose name contains ``openblas`` (Linux's ``/proc/self/maps``), and their thread functions
    under OpenBLAS's names (``scipy_openblas64_`` builds, as NumPy's wheels, suffix them).
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()})
    found = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (
            ("openblas", ""),
            ("scipy_openblas", "64_"),
            ("openblas", "64_"),
            ("scipy_openblas", ""),
        ):
            setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                found.append((path, setter, getter))
                break
    return found


def blas_threads_in_use() -> dict[str, int]:
    """Threads of each loaded OpenBLAS library (path -> threads); empty where none is found."""
    return {path: int(getter()) for path, _, getter in _openblas_libraries()}


@contextlib.contextmanager
def numpy_blas_threads(threads: int) -> Iterator[dict[str, int]]:
    """Run the block with ``threads`` OpenBLAS threads in every loaded OpenBLAS, then restore them.

    Nothing happens with ``threads <= 0`` or where no OpenBLAS is loaded (another BLAS: set its own
    variable, e.g. ``MKL_NUM_THREADS``, before starting Python).

    Args:
        threads: OpenBLAS threads inside the block; ``<= 0`` leaves them as they are.

    Yields:
        The threads in effect inside the block, per library path (empty: no OpenBLAS found).
    """
    libraries = _openblas_libraries() if threads > 0 else []
    before = [int(getter()) for _, _, getter in libraries]
    try:
        for _, setter, _ in libraries:
            setter(threads)
        yield blas_threads_in_use()
    finally:
        for (_, setter, _), count in zip(libraries, before, strict=True):
            setter(count)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` torch CPU threads (``<= 0``: as they are), then restore them.

    Yields:
        The torch threads in effect inside the block.
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def make_env(kind: str, n_envs: int, env_kwargs: dict[str, Any], action: str = "index") -> VecEnv:
    """The training VecEnv of one kind: ``"native"`` or ``"dummy"`` (over monitored single envs).

    ``action`` is ``"index"`` (catalogue indices) or ``"query"`` (query vectors: the native env's
    batched nearest image, or ``QueryAction`` around each single env).
    """
    if kind == "native":
        return NativeDialogVecEnv(n_envs, action=action, **env_kwargs)
    if action == "query":
        return DummyVecEnv([lambda: Monitor(QueryAction(DialogRetrievalEnv(**env_kwargs))) for _ in range(n_envs)])
    return DummyVecEnv([lambda: Monitor(DialogRetrievalEnv(**env_kwargs)) for _ in range(n_envs)])


def measure(kind: str, n_envs: int, args: Args, env_kwargs: dict[str, Any], agent: str = "ppo") -> dict[str, float]:
    """One timed ``learn()`` of ``agent`` (``ppo`` or ``ppo-query``): its throughput and where its time went."""
    envs = make_env(kind, n_envs, env_kwargs, action=MODEL_SPECS[agent].action)
    envs.seed(args.seed)
    n_steps = max(8, args.rollout_steps // n_envs)
    batch_size = min(256, n_steps * n_envs)
    settings = {"n_steps": n_steps, "batch_size": batch_size, "seed": args.seed, "device": "cpu"}
    if args.policy == "sb3":
        model = MODEL_SPECS[agent].algorithm("MultiInputPolicy", envs, **model_hyperparameters(agent, **settings))
    else:
        model = make_model(agent, envs, **settings)
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
    if args.policy not in POLICIES:
        raise ConfigurationError(f"--policy must be one of {list(POLICIES)}, got {args.policy!r}")
    unknown = [agent for agent in args.agents if agent not in AGENTS]
    if unknown or not args.agents:
        raise ConfigurationError(f"--agents must be some of {list(AGENTS)}, got {args.agents!r}")
    catalog = make_catalog({"num_train": 300, "num_test": 50, "dim": 16, "seed": 1} if args.quick else None)
    env_kwargs = {"catalog": catalog, "max_turns": args.max_turns, "rank_table": args.rank_table}
    if args.rank_table:  # the process's shared table, built here so that no measurement pays for it
        DialogRetrievalEnv(**env_kwargs).close()
    with numpy_blas_threads(args.blas_threads) as blas, torch_threads(args.torch_threads) as torch_count:
        threads = {
            "numpy_blas": blas or blas_threads_in_use(),
            "torch": torch_count,
            "torch_interop": torch.get_num_interop_threads(),
            "environment": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
        }
        rows = _measure_all(args, env_kwargs)
    return {"rows": rows, "threads": threads, "settings": {k: v for k, v in vars(args).items() if k != "out"}}


def _measure_all(args: Args, env_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for agent, n_envs in [(agent, n_envs) for agent in args.agents for n_envs in args.n_envs]:
        samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for repeat in range(args.repeats):
            for kind in KINDS:
                print(f"{agent}, n_envs {n_envs}, {kind}, repeat {repeat + 1}/{args.repeats} ...", flush=True)
                samples[kind].append(measure(kind, n_envs, args, env_kwargs, agent))
        row: dict[str, Any] = {"agent": agent, "n_envs": n_envs}
        for kind in KINDS:
            row[kind] = {key: statistics.median(s[key] for s in samples[kind]) for key in samples[kind][0]}
        ratios = [n["steps_per_s"] / d["steps_per_s"] for n, d in zip(samples["native"], samples["dummy"], strict=True)]
        row["speedup_median"] = statistics.median(ratios)
        row["speedups"] = ratios
        # The ceiling of the ratio: what it would be if the policy and the update cost nothing.
        row["env_ratio"] = row["dummy"]["env_s"] / max(row["native"]["env_s"], 1e-9)
        rows.append(row)
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: throughput, speed-up, its ceiling and the time split per kind."""
    threads = report["threads"]
    blas = sorted(set(threads["numpy_blas"].values())) or ["unknown (no OpenBLAS found)"]
    settings, load = report["settings"], report["load_average_1min"]
    lines = [
        "# SB3 PPO `learn()` throughput: native vector env against DummyVecEnv",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']['cpu']} ({report['machine']['cpu_count']} "
        f"cores). Policy: {settings['policy']}. Rank tables: {'on' if settings.get('rank_table') else 'off'}. "
        f"Threads: NumPy's OpenBLAS {', '.join(map(str, blas))}, "
        f"torch {threads['torch']}. Load average (1 minute, this benchmark's own ~1 included) {load['start']:.1f} "
        f"at the start, {load['end']:.1f} at the end. "
        f"Medians of {settings['repeats']} alternating measurements of "
        f"{settings['rollouts']} rollouts of {settings['rollout_steps']} transitions; the speed-up is the median "
        "of the paired ratios (native / dummy environment steps per second of the whole loop), with their "
        "range; the env ratio (dummy env s / native env s) is its ceiling.",
        "",
        "| agent | n_envs | env | steps/s | speed-up (range) | env ratio | env s | policy s | update s | wall s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        for kind in KINDS:
            cell = row[kind]
            speedup, ceiling = "", ""
            if kind == "native":
                speedup = f"{row['speedup_median']:.2f}x ({min(row['speedups']):.2f}-{max(row['speedups']):.2f})"
                ceiling = f"{row['env_ratio']:.2f}x"
            lines.append(
                f"| {row['agent']} | {row['n_envs']} | {kind} | {cell['steps_per_s']:,.0f} | {speedup} | {ceiling} | "
                f"{cell['env_s']:.2f} | {cell['policy_s']:.2f} | {cell['update_s']:.2f} | {cell['wall_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the report."""
    parser = dataclass_parser(Args, "SB3 PPO throughput: native vector env vs DummyVecEnv.")
    args = Args(**vars(parser.parse_args(argv)))
    if args.quick:
        args.n_envs, args.rollout_steps, args.rollouts, args.repeats = [2, 4], 64, 1, 1
    start, load_before = time.perf_counter(), os.getloadavg()
    report = run(args)
    # The cores are shared: other processes' load (1-minute averages) makes the numbers noisier.
    report["load_average_1min"] = {"start": load_before[0], "end": os.getloadavg()[0]}
    report["command"] = "python benchmarks/sb3_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["wall_seconds"] = time.perf_counter() - start
    report["machine"] = machine_info()
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "sb3_speed", report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
