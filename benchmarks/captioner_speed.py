"""What the neural shopper costs: vector-env steps with the captioner against the rule-based user.

    python benchmarks/captioner_speed.py --checkpoint runs/captioner/best.pt

Steps the native vector env on the test split with random actions, once with ``user="rule"`` and
once with ``user="captioner"`` (greedy decoding), side by side in one process with one torch
thread, at several batch sizes; reports milliseconds per step and the ratio. Writes
``benchmarks/results/captioner_speed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

import dialog_env
from dialog_env.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def step_milliseconds(user: str, user_kwargs: dict[str, Any], batch: int, steps: int, seed: int, catalog: str | None = None) -> float:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="captioner checkpoint (train_captioner.py's best.pt)")
    parser.add_argument("--catalog", default=None, help="HDF5 catalogue (default: the synthetic one)")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 1024], help="batch sizes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for batch in args.batches:
        rule = step_milliseconds("rule", {}, batch, args.steps, args.seed, args.catalog)
        captioner = step_milliseconds("captioner", {"checkpoint": str(args.checkpoint)}, batch, args.steps, args.seed, args.catalog)
        rows.append({"batch": batch, "rule_ms": rule, "captioner_ms": captioner, "ratio": captioner / rule})
        print(f"B={batch}: rule {rule:.1f} ms, captioner {captioner:.1f} ms per step ({captioner / rule:.1f}x)", flush=True)
    command = "python benchmarks/captioner_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command, "checkpoint": str(args.checkpoint), "steps": args.steps, "rows": rows,
              "versions": {"python": platform.python_version(), "torch": torch.__version__, "dialog_env": dialog_env.__version__}}  # fmt: skip
    lines = [
        "# Cost of the neural shopper",
        "",
        f"Command: `{command}`. Native vector env, test split of {'the default catalogue' if args.catalog is None else args.catalog}, random actions, one torch "
        f"thread, mean of {args.steps} steps; the captioner decodes greedily.",
        "",
        "| dialogs per step | rule-based user (ms) | neural captioner (ms) | ratio |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {r['batch']:,} | {r['rule_ms']:.1f} | {r['captioner_ms']:.1f} | {r['ratio']:.1f}x |" for r in rows),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "captioner_speed.json", report)
    (args.out / "captioner_speed.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
