r"""Transfer between shoppers: an agent trained against one user simulator, evaluated against another.

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
    python train_agent.py --user captioner --user-kwargs '{"checkpoint": "runs/captioner/best.pt"}' \
        --run-name paper-captioner-s1
    python benchmarks/user_transfer.py --run runs/paper-s1 --run runs/paper-captioner-s1 \
        --captioner runs/captioner/best.pt

Writes ``benchmarks/results/user_transfer.md`` and ``.json``. The two users share a vocabulary
when the captioner was trained on the rule-based user's captions (``train_captioner.py``'s
default), which lets one agent read both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.checkpoints import load_checkpoint, load_dialog_manager
from agents.dialog_manager import DialogManagerAgent
from agents.evaluation import EpisodeSet, evaluate, paired_difference, summarize
from dialog_env.cli import dataclass_parser
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import DialogEnvError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/user_transfer.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TURNS = (5, 10)
METRICS = ("ranking_percentile", "success", "recall@10")


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    run: list[Path]
    """Run folder of train_agent.py --agent paper (repeatable: --run A --run B, or --run A B)."""
    captioner: Path
    """Captioner checkpoint (train_captioner.py's best.pt)."""
    decoding: Literal["greedy", "sample"] = "greedy"
    """Captioner decoding."""
    episodes: int = 1000
    """Test episodes."""
    eval_seed: int = 2018
    """Seed of the episodes (train_agent.py's default)."""
    out: Path = RESULTS
    """Folder for user_transfer.md and user_transfer.json."""


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate every run against both users; print and write the report (2 on a bad run or captioner)."""
    parser = dataclass_parser(Args, "Evaluate paper agents against the rule-based and the neural user.")
    args = Args(**vars(parser.parse_args(argv)))
    start = time.perf_counter()
    try:
        report = transfer(args)
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["command"] = "python benchmarks/user_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["wall_seconds"] = time.perf_counter() - start
    report["machine"] = machine_info()
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "user_transfer", report, markdown)
    return 0


def transfer(args: Args) -> dict[str, Any]:
    """Evaluate the final model of every run against both users on the same episodes.

    Returns:
        The JSON report: the runs, the captioner, per agent and user the summaries of
        :func:`agents.evaluation.summarize`, and per agent the paired gaps at :data:`TURNS`.

    Raises:
        DialogEnvError: runs on different catalogues or splits, or a captioner speaking another
            vocabulary than the rule-based user.
    """
    captioner_kwargs = {"checkpoint": str(args.captioner), "decoding": args.decoding}
    users = {
        "rule": {"user": "rule", "user_kwargs": {}},
        "captioner": {"user": "captioner", "user_kwargs": captioner_kwargs},
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
            f"the captioner {str(args.captioner)!r} speaks another vocabulary than the rule-based user, so one agent "
            f"cannot read both; train it on the rule-based user's captions (train_captioner.py's default)"
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
            agent = DialogManagerAgent(model, name=label)
            results[user] = evaluate(agent, episodes, kwargs, max_turns=max(TURNS), seed=args.eval_seed)
            summaries.setdefault(label, {})[user] = summarize(results[user], seed=args.eval_seed)
        gaps.append({
            "agent": label,
            "turns": {
                str(turn): {
                    m: paired_difference(results["captioner"], results["rule"], m, turn, seed=args.eval_seed)
                    for m in METRICS
                }
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
    """The Markdown report (``user_transfer.md``) of :func:`transfer`'s JSON report."""
    bleu = report["captioner"].get("bleu", {})
    bleu_text = ", ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.1f}" for n in range(1, 5) if f"bleu{n}" in bleu)
    lines = [
        "# Transfer between user simulators",
        "",
        f"Command: `{report.get('command', '')}`. {report['episodes']:,} test episodes (seed {report['eval_seed']}), "
        f"the same for every agent and user; mean [95% bootstrap interval], in %. Neural user: "
        f"`{report['captioner']['checkpoint']}` "
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
