"""What the neural shopper costs: vector-env steps with the captioner against the rule-based user.

    python benchmarks/captioner_speed.py --checkpoint runs/captioner/best.pt

Steps the native vector env on the test split with random actions, once with ``user="rule"`` and
once with ``user="captioner"`` (greedy decoding), side by side in one process with one torch
thread, at several batch sizes; the two users' measurements alternate (``--repeats`` times each),
and each is timed step by step. Reports the median milliseconds per step, their ratio, and the
mean number of words per caption (the captioner's decoding cost grows with it). Writes
``benchmarks/results/captioner_speed.md`` and ``.json``.
"""

from __future__ import annotations

import os
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
    repeats: int = 3
    """Measurements of each user per batch size, alternating rule, captioner, rule... (medians over all their steps)."""
    seed: int = 0
    """Seed of the resets and the random actions."""
    out: Path = RESULTS
    """Folder for captioner_speed.md and captioner_speed.json."""


def step_milliseconds(
    user: str, user_kwargs: dict[str, Any], batch: int, steps: int, seed: int, catalog: str | None = None
) -> tuple[np.ndarray, float]:
    """Wall time of ``steps`` steps of ``batch`` dialogs, one by one (after one warm-up step).

    Returns:
        ``((steps,) float64`` milliseconds per step, mean words per caption of the timed steps``)``.
    """
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=batch, vectorization_mode="vector_entry_point", split="test",
                        catalog=catalog, user=user, user_kwargs=user_kwargs)  # fmt: skip
    envs.reset(seed=seed)
    num_images = envs.unwrapped.catalog.num_images
    actions = np.random.default_rng(seed).integers(num_images, size=(steps + 1, batch))
    envs.step(actions[0])
    times, words = np.empty(steps), 0
    for step, action in enumerate(actions[1:]):
        start = time.perf_counter()
        *_, info = envs.step(action)
        times[step] = (time.perf_counter() - start) * 1000
        words += sum(len(text.split()) for text in info["feedback_text"])
    envs.close()
    return times, words / (steps * batch)


def main(argv: Sequence[str] | None = None) -> int:
    """Time both users at every batch size; write ``captioner_speed.json`` and ``.md``."""
    args = Args(**vars(dataclass_parser(Args, __doc__.splitlines()[0]).parse_args(argv)))
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    captioner_kwargs = {"checkpoint": str(args.checkpoint)}
    rows = []
    for batch in args.batches:
        rule, captioner, words = [], [], []
        for _ in range(args.repeats):
            rule.append(step_milliseconds("rule", {}, batch, args.steps, args.seed, args.catalog)[0])
            times, mean_words = step_milliseconds("captioner", captioner_kwargs, batch, args.steps, args.seed,
                                                  args.catalog)  # fmt: skip
            captioner.append(times)
            words.append(mean_words)
        rule_ms, captioner_ms = float(np.median(rule)), float(np.median(captioner))
        rows.append({"batch": batch, "rule_ms": rule_ms, "captioner_ms": captioner_ms, "ratio": captioner_ms / rule_ms,
                     "rule_ms_mean": float(np.mean(rule)), "captioner_ms_mean": float(np.mean(captioner)),
                     "caption_words": float(np.mean(words))})  # fmt: skip
        print(f"B={batch}: rule {rule_ms:.1f} ms, captioner {captioner_ms:.1f} ms per step (medians, "
              f"{captioner_ms / rule_ms:.1f}x)", flush=True)  # fmt: skip
    command = "python benchmarks/captioner_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    report = {"command": command, "checkpoint": str(args.checkpoint), "steps": args.steps, "repeats": args.repeats,
              "rows": rows, "machine": machine, "load_start": [round(x, 2) for x in load_start],
              "load_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    catalog = "the default catalogue" if args.catalog is None else args.catalog
    lines = [
        "# Cost of the neural shopper",
        "",
        f"Command: `{command}`. Native vector env, test split of {catalog}, random actions, one torch "
        f"thread; each cell is the median time of one step over {args.repeats} x {args.steps} steps, the two "
        f"users measured alternately. The captioner decodes greedily.",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores; torch {machine['versions'].get('torch')}. "
        f"Load average at start / end: {report['load_start']} / {report['load_end']} (the machine is shared).",
        "",
        "| dialogs per step | rule-based user (ms) | neural captioner (ms) | ratio | words per caption |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['batch']:,} | {r['rule_ms']:.1f} | {r['captioner_ms']:.1f} | {r['ratio']:.1f}x | "
            f"{r['caption_words']:.2f} |"
            for r in rows
        ),
    ]
    write_report(args.out, "captioner_speed", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
