"""Transfer between shoppers: an agent trained against one user simulator, evaluated against another.

The paper trains and evaluates its dialog manager against one user model. An agent that only
exploits its training simulator's habits loses when the shopper changes. This benchmark evaluates
the final model of each ``train_agent.py --agent paper`` run given with ``--run`` against the
rule-based user and against the neural relative captioner, on the same test episodes, and
reports per agent the gap (captioner minus rule, paired bootstrap intervals) at turns 5 and 10.

Usage::

    python train_agent.py                                     # runs/paper-s1, trained on the rule-based user
    python train_captioner.py                                 # runs/captioner/best.pt
    python benchmarks/user_transfer.py --run runs/paper-s1 --captioner runs/captioner/best.pt
    # optional reverse direction: an agent trained against the captioner
    python train_agent.py --user captioner --user-kwargs '{"checkpoint": "runs/captioner/best.pt"}' --run-name paper-captioner-s1
    python benchmarks/user_transfer.py --run runs/paper-s1 --run runs/paper-captioner-s1 --captioner runs/captioner/best.pt

Writes ``benchmarks/results/user_transfer.md`` and ``.json``. The two users share a vocabulary
when the captioner was trained on the rule-based user's captions (``train_captioner.py``'s
default), which lets one agent read both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from agents.checkpoints import load_checkpoint, load_dialog_manager
from agents.dialog_manager import DialogManagerAgent
from agents.evaluation import EpisodeSet, evaluate, paired_difference, summarize
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import DialogEnvError
from dialog_env.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
TURNS = (5, 10)
METRICS = ("ranking_percentile", "success", "recall@10")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate paper agents against the rule-based and the neural user.")
    parser.add_argument("--run", type=Path, action="append", required=True, help="run folder of train_agent.py --agent paper (repeatable)")
    parser.add_argument("--captioner", type=Path, required=True, help="captioner checkpoint (train_captioner.py's best.pt)")
    parser.add_argument("--decoding", default="greedy", choices=["greedy", "sample"], help="captioner decoding")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes (default 1,000)")
    parser.add_argument("--eval-seed", type=int, default=2018, help="seed of the episodes (train_agent.py's default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for user_transfer.md/.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        report = transfer(args)
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["command"] = "python benchmarks/user_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["wall_seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "user_transfer.json", report)
    (args.out / "user_transfer.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


def transfer(args: argparse.Namespace) -> dict[str, Any]:
    users = {
        "rule": {"user": "rule", "user_kwargs": {}},
        "captioner": {"user": "captioner", "user_kwargs": {"checkpoint": str(args.captioner), "decoding": args.decoding}},
    }
    agents: dict[str, Any] = {}
    catalog = split = None
    for run in args.run:
        path = run / "checkpoints" / "final.pt"
        run_args = load_checkpoint(path)["args"]
        if catalog is not None and (run_args["catalog"], run_args["eval_split"]) != (catalog, split):
            raise DialogEnvError(f"run {str(run)!r} uses another catalogue or split than {str(args.run[0])!r}")
        catalog, split = run_args["catalog"], run_args["eval_split"]
        label = f"{run.name} (trained against {run_args['user']})"
        agents[label] = (path, run_args["user"])
    envs = {name: {"catalog": catalog, "split": split, **spec} for name, spec in users.items()}
    probes = {name: DialogRetrievalEnv(**kwargs) for name, kwargs in envs.items()}
    if probes["rule"].vocabulary != probes["captioner"].vocabulary:
        raise DialogEnvError(
            f"the captioner {str(args.captioner)!r} speaks another vocabulary than the rule-based user, so one agent cannot "
            f"read both; train it on the rule-based user's captions (train_captioner.py's default)"
        )
    image_dim, words = probes["rule"].catalog.dim, probes["rule"].vocabulary.words
    episodes = EpisodeSet.draw(probes["rule"].catalog.num_images, args.episodes, args.eval_seed)
    summaries: dict[str, dict[str, Any]] = {}
    gaps: list[dict[str, Any]] = []
    for label, (path, _) in agents.items():
        model = load_dialog_manager(path, image_dim, words)
        results = {}
        for user, kwargs in envs.items():
            print(f"evaluating {label} against the {user} user ...", flush=True)
            results[user] = evaluate(DialogManagerAgent(model, name=label), episodes, kwargs, max_turns=max(TURNS), seed=args.eval_seed)
            summaries.setdefault(label, {})[user] = summarize(results[user], seed=args.eval_seed)
        gaps.append({
            "agent": label,
            "turns": {
                str(turn): {m: paired_difference(results["captioner"], results["rule"], m, turn, seed=args.eval_seed) for m in METRICS}
                for turn in TURNS
            },
        })  # fmt: skip
    captioner_meta = load_checkpoint_meta(args.captioner)
    return {
        "runs": [str(r) for r in args.run],
        "captioner": {"checkpoint": str(args.captioner), "decoding": args.decoding, **captioner_meta},
        "episodes": len(episodes),
        "eval_seed": args.eval_seed,
        "summaries": summaries,
        "gaps": gaps,
    }


def load_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The captioner's training epoch, validation loss and BLEU, from its checkpoint."""
    from dialog_env.users.captioner import load_captioner_checkpoint

    payload = load_captioner_checkpoint(path)
    return {key: payload[key] for key in ("epoch", "val_loss", "bleu") if key in payload}


def _cell(value: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{100 * value['mean']:{sign}.1f} [{100 * value['low']:{sign}.1f}, {100 * value['high']:{sign}.1f}]"


def to_markdown(report: dict[str, Any]) -> str:
    bleu = report["captioner"].get("bleu", {})
    bleu_text = ", ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.1f}" for n in range(1, 5) if f"bleu{n}" in bleu)
    lines = [
        "# Transfer between user simulators",
        "",
        f"Command: `{report.get('command', '')}`. {report['episodes']:,} test episodes (seed {report['eval_seed']}), the same "
        f"for every agent and user; mean [95% bootstrap interval], in %. Neural user: `{report['captioner']['checkpoint']}` "
        f"({report['captioner']['decoding']} decoding{'; ' + bleu_text if bleu_text else ''}).",
        "",
        "| agent | evaluated against | turn | agent ranking pct. | success by turn | R@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, by_user in report["summaries"].items():
        for user, summary in by_user.items():
            for turn in TURNS:
                row = summary["turns"][turn - 1]
                lines.append(f"| {label} | {user} | {turn} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    lines += ["", "Gap, neural captioner minus rule-based user (paired over the same episodes):", ""]
    lines += ["| agent | turn | agent ranking pct. | success by turn | R@10 |", "| --- | ---: | ---: | ---: | ---: |"]
    for item in report["gaps"]:
        for turn in TURNS:
            cells = item["turns"][str(turn)]
            lines.append(f"| {item['agent']} | {turn} | " + " | ".join(_cell(cells[m], True) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
