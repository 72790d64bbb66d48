"""Does model-based policy improvement (stage 2) beat supervised pre-training (stage 1)?

Loads the models of a ``train_agent.py --agent paper`` run (``checkpoints/stage1.pt`` and
``checkpoints/final.pt``) and, optionally, of control runs (e.g. stage 1 trained for as many
updates as stage 1 + stage 2, to separate the effect of look-ahead from that of more training),
evaluates them on the same fixed test episodes, and reports at turns 5 and 10 the agent's own
ranking percentile, success and Recall@10, with paired bootstrap intervals of the differences.
Writes ``benchmarks/results/policy_improvement.md`` and ``.json``.

Usage::

    python train_agent.py                                   # runs/paper-s1
    python train_agent.py --run-name control-s1-700 --pretrain-iterations 700 --improve-iterations 0
    python benchmarks/policy_improvement.py --run runs/paper-s1 --control runs/control-s1-700
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.checkpoints import load_checkpoint, load_dialog_manager
from agents.dialog_manager import DialogManagerAgent
from agents.evaluation import EpisodeSet, evaluate, paired_difference, summarize
from dialog_env.cli import dataclass_parser
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import DialogEnvError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/policy_improvement.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TURNS = (5, 10)
METRICS = ("ranking_percentile", "success", "recall@10")


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    run: Path
    """Run folder of train_agent.py --agent paper (its stage1.pt and final.pt are compared)."""
    control: list[Path] = field(default_factory=list)
    """Run folder(s) whose final.pt is a control (repeatable: --control A --control B, or --control A B)."""
    episodes: int = 1000
    """Test episodes."""
    eval_seed: int = 2018
    """Seed of the episodes (train_agent.py's default)."""
    out: Path = RESULTS
    """Folder for policy_improvement.md and policy_improvement.json."""


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate stage 1, stage 2 and the controls; print and write the report (2 on a bad run)."""
    parser = dataclass_parser(Args, "Compare stage 2 with stage 1 (and controls) on the same episodes.")
    args = Args(**vars(parser.parse_args(argv)))
    start = time.perf_counter()
    try:
        report = compare(args)
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["command"] = "python benchmarks/policy_improvement.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["wall_seconds"] = time.perf_counter() - start
    report["machine"] = machine_info()
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "policy_improvement", report, markdown)
    return 0


def compare(args: Args) -> dict[str, Any]:
    """Evaluate the run's two stages and the controls on the same episodes, with paired differences."""
    stage1_path = args.run / "checkpoints" / "stage1.pt"
    run_args = load_checkpoint(stage1_path)["args"]
    env_kwargs = {"catalog": run_args["catalog"], "user": run_args["user"], "split": run_args["eval_split"]}
    probe = DialogRetrievalEnv(**env_kwargs)
    image_dim, words = probe.catalog.dim, probe.vocabulary.words
    models = {
        f"stage 1 ({run_args['pretrain_iterations']} it.)": load_dialog_manager(stage1_path, image_dim, words),
        f"stage 2 ({run_args['pretrain_iterations']} + {run_args['improve_iterations']} it.)": load_dialog_manager(
            args.run / "checkpoints" / "final.pt", image_dim, words
        ),
    }
    for control in args.control:
        path = control / "checkpoints" / "final.pt"
        control_args = load_checkpoint(path)["args"]
        label = (
            f"control: {control.name} (stage 1 {control_args['pretrain_iterations']} it., "
            f"stage 2 {control_args['improve_iterations']} it.)"
        )
        models[label] = load_dialog_manager(path, image_dim, words)
    episodes = EpisodeSet.draw(probe.catalog.num_images, args.episodes, args.eval_seed)
    results = {}
    for label, model in models.items():
        print(f"evaluating {label} ...", flush=True)
        agent = DialogManagerAgent(model, name=label)
        results[label] = evaluate(agent, episodes, env_kwargs, max_turns=max(TURNS), seed=args.eval_seed)
    labels = list(results)
    stage1, stage2 = labels[0], labels[1]
    comparisons = [(stage2, stage1)] + [(stage2, label) for label in labels[2:]]
    return {
        "run": str(args.run),
        "episodes": len(episodes),
        "eval_seed": args.eval_seed,
        "summaries": {label: summarize(result, seed=args.eval_seed) for label, result in results.items()},
        "differences": [
            {
                "a": a,
                "b": b,
                "turns": {
                    str(turn): {
                        metric: paired_difference(results[a], results[b], metric, turn, seed=args.eval_seed)
                        for metric in METRICS
                    }
                    for turn in TURNS
                },
            }
            for a, b in comparisons
        ],
    }


def _cell(value: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{100 * value['mean']:{sign}.2f} [{100 * value['low']:{sign}.2f}, {100 * value['high']:{sign}.2f}]"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a table per model and turn, then the paired differences."""
    lines = [
        "# Policy improvement (stage 2) against supervised pre-training (stage 1)",
        "",
        f"Command: `{report.get('command', '')}`. {report['episodes']:,} test episodes (seed {report['eval_seed']}), "
        "the same for every model; mean [95% bootstrap interval], in %.",
        "",
        "| model | turn | agent ranking pct. | success by turn | R@10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, summary in report["summaries"].items():
        for turn in TURNS:
            row = summary["turns"][turn - 1]
            lines.append(f"| {label} | {turn} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    lines += ["", "Paired differences (same episodes; an interval excluding 0 is a significant difference):", ""]
    lines += [
        "| difference | turn | agent ranking pct. | success by turn | R@10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for item in report["differences"]:
        for turn in TURNS:
            cells = " | ".join(_cell(item["turns"][str(turn)][m], True) for m in METRICS)
            lines.append(f"| {item['a']} minus {item['b']} | {turn} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
