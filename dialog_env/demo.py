"""Play a few dialogs with a simple agent and print each transcript and the per-turn ranks.

Run ``python -m dialog_env.demo --help`` for the options. The agent shows random images of the
split without repeats: the reference every learned agent must beat.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

import dialog_env  # noqa: F401  (registers DialogRetrieval-v0)
from dialog_env.random_streams import stream


def play(episodes: int, split: str, max_turns: int, seed: int, catalog: str | None) -> np.ndarray:
    """Play ``episodes`` dialogs with the random agent and print their transcripts.

    Args:
        episodes: dialogs to play; dialog ``e`` resets the environment with seed ``seed + e``.
        split: the catalogue split.
        max_turns: turns per dialog.
        seed: seed of the episodes and of the agent.
        catalog: an HDF5 catalogue path, or ``None`` for the synthetic catalogue.

    Returns:
        ``(episodes, max_turns + 1) int64`` target ranks per turn (column 0: the initial image;
        -1 after the episode ended).
    """
    env = gym.make("DialogRetrieval-v0", catalog=catalog, split=split, max_turns=max_turns, render_mode="ansi")
    agent_rng = stream(seed, "demo_agent")  # not the stream of the env seeded with `seed`
    num_images = env.unwrapped.catalog.num_images
    ranks = np.full((episodes, max_turns + 1), -1, dtype=np.int64)
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        seen = {info["shown_index"]}
        ranks[episode, 0] = info["target_rank"]
        done = False
        while not done:
            action = int(agent_rng.integers(num_images))
            while action in seen:  # random without repeats
                action = int(agent_rng.integers(num_images))
            seen.add(action)
            observation, reward, terminated, truncated, info = env.step(action)
            ranks[episode, info["turn"]] = info["target_rank"]
            done = terminated or truncated
        print(f"--- dialog {episode + 1}/{episodes} (target found: {info['is_success']})")
        print(env.render(), end="")
    env.close()
    return ranks


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m dialog_env.demo [--episodes N] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3, help="dialogs to play (default 3)")
    parser.add_argument("--split", default="test", help="catalogue split (default test)")
    parser.add_argument("--max-turns", type=int, default=10, help="turns per dialog (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes and of the agent")
    parser.add_argument("--catalog", default=None, help="HDF5 catalogue (default: the synthetic catalogue)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    start = time.perf_counter()
    ranks = play(args.episodes, args.split, args.max_turns, args.seed, args.catalog)
    print("\nper-turn target rank (random agent without repeats; '-' = dialog already over)")
    print("dialog | " + " ".join(f"{turn:>6d}" for turn in range(ranks.shape[1])))
    for episode, row in enumerate(ranks):
        print(f"{episode + 1:>6d} | " + " ".join(f"{r:>6d}" if r >= 0 else f"{'-':>6s}" for r in row))
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
