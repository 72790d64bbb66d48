"""What the neural shopper costs: vector-env steps with the captioner against the rule-based user.

    python benchmarks/captioner_speed.py --checkpoint runs/captioner/best.pt

Steps the native vector env on the test split with random actions, once with ``user="rule"`` and
once with ``user="captioner"`` (greedy decoding), side by side in one process with one torch
thread, at several batch sizes; reports milliseconds per step and the ratio. Writes
``benchmarks/results/captioner_speed.md`` and ``.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env.cli import dataclass_parser

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/captioner_speed.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    checkpoint: Path
    """Captioner checkpoint (train_captioner.py's best.pt)."""
    catalog: str | None = None
    """HDF5 catalogue (default: the synthetic one)."""
    batches: list[int] = field(default_factory=lambda: [128, 1024])
    """Batch sizes."""
    steps: int = 20
    """Timed steps per measurement."""
    seed: int = 0
    """Seed of the resets and the random actions."""
    out: Path = RESULTS
    """Folder for captioner_speed.md and captioner_speed.json."""


def step_milliseconds(
    user: str, user_kwargs: dict[str, Any], batch: int, steps: int, seed: int, catalog: str | None = None
) -> float:
    """Mean wall time of one ``step`` of ``batch`` dialogs (after one warm-up step), in ms."""
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=batch, vectorization_mode="vector_entry_point", split="test",
                        catalog=catalog, user=user, user_kwargs=user_kwargs)  # fmt: skip
    envs.reset(seed=seed)
    num_images = envs.unwrapped.catalog.num_images
    actions = np.random.default_rng(seed).integers(num_images, size=(steps + 1, batch))
    envs.step(actions[0])
    start = time.perf_counter()
    for action in actions[1:]:
        envs.step(action)
    return (time.perf_counter() - start) / steps * 1000


def main(argv: Sequence[str] | None = None) -> int:
    """Time both users at every batch size; write ``captioner_speed.json`` and ``.md``."""
    args = Args(**vars(dataclass_parser(Args, __doc__.splitlines()[0]).parse_args(argv)))
    torch.set_num_threads(1)
    rows = []
    for batch in args.batches:
        rule = step_milliseconds("rule", {}, batch, args.steps, args.seed, args.catalog)
        captioner_kwargs = {"checkpoint": str(args.checkpoint)}
        captioner = step_milliseconds("captioner", captioner_kwargs, batch, args.steps, args.seed, args.catalog)
        rows.append({"batch": batch, "rule_ms": rule, "captioner_ms": captioner, "ratio": captioner / rule})
        print(f"B={batch}: rule {rule:.1f} ms, captioner {captioner:.1f} ms per step ({captioner / rule:.1f}x)",
              flush=True)  # fmt: skip
    command = "python benchmarks/captioner_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command, "checkpoint": str(args.checkpoint), "steps": args.steps, "rows": rows,
              "machine": machine_info()}  # fmt: skip
    catalog = "the default catalogue" if args.catalog is None else args.catalog
    lines = [
        "# Cost of the neural shopper",
        "",
        f"Command: `{command}`. Native vector env, test split of {catalog}, random actions, one torch "
        f"thread, mean of {args.steps} steps; the captioner decodes greedily.",
        "",
        "| dialogs per step | rule-based user (ms) | neural captioner (ms) | ratio |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {r['batch']:,} | {r['rule_ms']:.1f} | {r['captioner_ms']:.1f} | {r['ratio']:.1f}x |" for r in rows),
    ]
    write_report(args.out, "captioner_speed", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
