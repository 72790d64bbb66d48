r"""Transfer between shoppers: agents trained against one user simulator, evaluated against others.

The paper trains and evaluates its dialog manager against one user model. An agent that only
exploits its training simulator's habits loses when the shopper changes. This benchmark evaluates
the final model of each ``train_agent.py`` run of the paper's agent or of the dialog retriever
(``--agent dialog-retriever``) given with ``--run`` against every user it can build, on the same
test episodes:

- ``rule``: the rule-based user;
- ``captioner``: the neural relative captioner (with ``--captioner CHECKPOINT``);
- ``corpus``, ``corpus-half0``, ``corpus-half1``: real shoppers' captions (with ``--captions
  FILE``, a Shoes relative-caption file): all of them, or those of one half of the target images
  (:mod:`dialog_env.users.corpus`). An agent trained against one half and evaluated against the
  other meets phrasings it has never read: the *phrasing split*.

Every agent reads every user with its own training vocabulary (the environment's ``vocabulary``
argument): words it never saw in training reach it as ``<unk>``, as they would from a new shopper.
Per agent, the gap of each user against the agent's own training user (paired bootstrap intervals
over the same episodes) at turns 5 and 10.

Usage::

    python train_agent.py                                     # runs/paper-s1, trained on the rule-based user
    python train_agent.py --user corpus --run-name paper-corpus-half0-s1 \
        --user-kwargs '{"captions": "../shared/data/shoes/relative_captions_shoes.train.json", "image_half": 0}'
    python benchmarks/user_transfer.py --run runs/paper-s1 runs/paper-corpus-half0-s1 \
        --captions ../shared/data/shoes/relative_captions_shoes.train.json
    # the neural user as well
    python train_captioner.py                                 # runs/captioner/best.pt
    python benchmarks/user_transfer.py --run runs/paper-s1 --captioner runs/captioner/best.pt

Writes ``benchmarks/results/user_transfer.md`` and ``.json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.checkpoints import agent_from_checkpoint, load_checkpoint
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
    """Run folder of train_agent.py --agent paper or dialog-retriever (repeatable: --run A --run B, or --run A B)."""
    captioner: Path | None = None
    """Captioner checkpoint (train_captioner.py's best.pt): adds the captioner user."""
    decoding: Literal["greedy", "sample"] = "greedy"
    """Captioner decoding."""
    captions: Path | None = None
    """Shoes relative-caption file: adds the corpus users (all captions, and each half of the target images)."""
    episodes: int = 1000
    """Test episodes."""
    eval_seed: int = 2018
    """Seed of the episodes (train_agent.py's default)."""
    out: Path = RESULTS
    """Folder for user_transfer.md and user_transfer.json."""


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate every run against every user; print and write the report (2 on a bad run, captioner or captions)."""
    parser = dataclass_parser(Args, "Evaluate trained agents against every user simulator they can meet.")
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


def user_specs(args: Args) -> dict[str, dict[str, Any]]:
    """The users to evaluate against: name -> ``{"user": ..., "user_kwargs": ...}``."""
    users: dict[str, dict[str, Any]] = {"rule": {"user": "rule", "user_kwargs": {}}}
    if args.captioner is not None:
        kwargs = {"checkpoint": str(args.captioner), "decoding": args.decoding}
        users["captioner"] = {"user": "captioner", "user_kwargs": kwargs}
    if args.captions is not None:
        users["corpus"] = {"user": "corpus", "user_kwargs": {"captions": str(args.captions)}}
        for half in (0, 1):
            kwargs = {"captions": str(args.captions), "image_half": half}
            users[f"corpus-half{half}"] = {"user": "corpus", "user_kwargs": kwargs}
    return users


def home_user(run_args: dict[str, Any]) -> str:
    """The name (as in :func:`user_specs`) of the user a run was trained against."""
    user = run_args["user"]
    kwargs = run_args.get("user_kwargs") or {}
    if isinstance(kwargs, str):  # train_agent.py keeps --user-kwargs as given, a JSON object
        kwargs = json.loads(kwargs)
    half = kwargs.get("image_half") if isinstance(kwargs, dict) else None
    return f"corpus-half{half}" if user == "corpus" and half is not None else user


def transfer(args: Args) -> dict[str, Any]:
    """Evaluate the final model of every run against every user on the same episodes.

    Returns:
        The JSON report: the runs, the users, per agent and user the summaries of
        :func:`agents.evaluation.summarize`, and per agent the paired gaps (each user minus the
        agent's training user) at :data:`TURNS`.

    Raises:
        DialogEnvError: runs on different catalogues or splits, a run trained against a user this
            invocation cannot build (give --captioner or --captions), or a user that cannot be built.
    """
    users = user_specs(args)
    agents: dict[str, tuple[Path, str, list[str]]] = {}
    catalog = split = None
    for run in args.run:
        path = run / "checkpoints" / "final.pt"
        payload = load_checkpoint(path)
        run_args = payload["args"]
        if catalog is not None and (run_args["catalog"], run_args["eval_split"]) != (catalog, split):
            raise DialogEnvError(f"run {str(run)!r} uses another catalogue or split than {str(args.run[0])!r}")
        catalog, split = run_args["catalog"], run_args["eval_split"]
        home = home_user(run_args)
        if home not in users:
            raise DialogEnvError(
                f"run {str(run)!r} was trained against the {home} user; give "
                f"{'--captioner' if home == 'captioner' else '--captions'} so that it is evaluated against it too"
            )
        agents[f"{run.name} (trained against {home})"] = (path, home, list(payload["vocabulary"]))
    envs = {name: {"catalog": catalog, "split": split, **spec} for name, spec in users.items()}
    probe = DialogRetrievalEnv(**envs["rule"])
    image_dim = probe.catalog.dim
    episodes = EpisodeSet.draw(probe.catalog.num_images, args.episodes, args.eval_seed)
    summaries: dict[str, dict[str, Any]] = {}
    gaps: list[dict[str, Any]] = []
    for label, (path, home, words) in agents.items():
        agent, _ = agent_from_checkpoint(path, image_dim, name=label)
        results = {}
        for user, kwargs in envs.items():
            print(f"evaluating {label} against the {user} user ...", flush=True)
            reading = {**kwargs, "vocabulary": words}  # the agent reads every user with its own words
            results[user] = evaluate(agent, episodes, reading, max_turns=max(TURNS), seed=args.eval_seed)
            summaries.setdefault(label, {})[user] = summarize(results[user], seed=args.eval_seed)
        for user in envs:
            if user == home:
                continue
            gaps.append({
                "agent": label,
                "user": user,
                "against": home,
                "turns": {
                    str(turn): {
                        m: paired_difference(results[user], results[home], m, turn, seed=args.eval_seed)
                        for m in METRICS
                    }
                    for turn in TURNS
                },
            })  # fmt: skip
    report: dict[str, Any] = {
        "runs": [str(r) for r in args.run],
        "users": {name: spec["user_kwargs"] | {"user": spec["user"]} for name, spec in users.items()},
        "episodes": len(episodes),
        "eval_seed": args.eval_seed,
        "summaries": summaries,
        "gaps": gaps,
    }
    if args.captioner is not None:
        report["captioner"] = {"checkpoint": str(args.captioner), "decoding": args.decoding,
                               **load_checkpoint_meta(args.captioner)}  # fmt: skip
    return report


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
    lines = [
        "# Transfer between user simulators",
        "",
        f"Command: `{report.get('command', '')}`. {report['episodes']:,} test episodes (seed {report['eval_seed']}), "
        "the same for every agent and user; mean [95% bootstrap interval], in %. Every agent reads every user "
        "with its own training vocabulary (unknown words: `<unk>`).",
        "",
    ]
    if "captioner" in report:
        bleu = report["captioner"].get("bleu", {})
        bleu_text = ", ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.1f}" for n in range(1, 5) if f"bleu{n}" in bleu)
        lines += [
            f"Neural user: `{report['captioner']['checkpoint']}` ({report['captioner']['decoding']} decoding"
            f"{'; ' + bleu_text if bleu_text else ''}).",
            "",
        ]
    if any(name.startswith("corpus") for name in report["users"]):
        lines += [
            "Corpus users: real captions of the Shoes train split true of each pair; `corpus-half0` / "
            "`corpus-half1`: those of one half of the target images, disjoint phrasings.",
            "",
        ]
    lines += [
        "| agent | evaluated against | turn | agent ranking pct. | success by turn | R@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, by_user in report["summaries"].items():
        for user, summary in by_user.items():
            for turn in TURNS:
                row = summary["turns"][turn - 1]
                lines.append(f"| {label} | {user} | {turn} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    lines += ["", "Gap, each user minus the agent's training user (paired over the same episodes):", ""]
    lines += [
        "| agent | user minus training user | turn | agent ranking pct. | success by turn | R@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for item in report["gaps"]:
        for turn in TURNS:
            cells = item["turns"][str(turn)]
            lines.append(
                f"| {item['agent']} | {item['user']} - {item['against']} | {turn} | "
                + " | ".join(_cell(cells[m], True) for m in METRICS)
                + " |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
