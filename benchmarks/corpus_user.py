"""The caption parser and the corpus user on the real Shoes captions: how much they read, say and cost.

    python benchmarks/corpus_user.py [--data ../shared/data/shoes] [--batch 128] [--steps 200]

Measured, and written to ``benchmarks/results/corpus_user.md`` and ``.json``:

- **parser** (:func:`dialog_env.domain.parser.parse_caption`) on every train caption: the share with
  at least one claim (goal: at least 80%), the share fully parsed (claims and no unparsed word),
  the claims per caption, the attributes claimed; and on the hand-labelled sample
  (``benchmarks/caption_parser_labels.json``: 200 captions by record index, the claims a reader
  finds in each) the precision and recall of the parser's claims;
- **corpus user** (``user="corpus"``) in dialogs of the native vector env on the default catalogue
  (test split, ``--batch`` dialogs of 10 turns, random shown images): the share of turns answered
  with a real caption (goal: at least 70%), and how many attributes each answer is about;
- **cost**: one vector step with ``user="corpus"`` against ``user="rule"`` (the same seeds and
  actions), steps alternating between the two, median milliseconds and their ratio (goal: at
  most 2x); and the users' ``describe`` alone on the pairs of those steps.

The real captions are read, never copied: the report holds aggregate figures only.
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.cli import dataclass_parser
from dialog_env.data.captions import read_caption_texts
from dialog_env.domain.parser import parse_caption
from dialog_env.errors import DialogEnvError
from dialog_env.vector import DialogRetrievalVectorEnv

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "shoes"
LABELS = ROOT / "benchmarks" / "caption_parser_labels.json"
CAPTIONS_FILE = "relative_captions_shoes.train.json"
GOALS = {"with_claims": 0.80, "real_caption_share": 0.70, "cost_ratio": 2.0}


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    data: Path = DEFAULT_DATA
    """Folder with the Shoes caption JSON files."""
    labels: Path = LABELS
    """Hand labels of the parser's sample."""
    batch: int = 128
    """Dialogs stepped together."""
    steps: int = 200
    """Vector steps per user (the dialogs restart every 10 turns)."""
    seed: int = 0
    """Seed of the dialogs and the random actions."""
    out: Path = RESULTS
    """Folder for corpus_user.md and corpus_user.json."""


def parser_figures(texts: Sequence[str], labels: dict[str, list[str]]) -> dict[str, Any]:
    """The parser's coverage on ``texts`` and its precision and recall on the hand labels.

    Args:
        texts: every caption of the file, in record order.
        labels: record index (a string) -> the claims a reader finds in that caption (``str(Claim)``).
    """
    parsed = [parse_caption(text) for text in texts]
    attributes = collections.Counter(c.attribute for p in parsed for c in set(p.claims))
    right = said = wanted = 0
    for index, gold in labels.items():
        found = {str(c) for c in parsed[int(index)].claims}
        right += len(found & set(gold))
        said += len(found)
        wanted += len(set(gold))
    return {
        "captions": len(texts),
        "with_claims": sum(bool(p.claims) for p in parsed) / len(parsed),
        "fully_parsed": sum(p.fully_parsed for p in parsed) / len(parsed),
        "mean_claims": float(np.mean([len(p.claims) for p in parsed])),
        "unparsed_word_share": sum(len(p.unparsed) for p in parsed) / sum(len(p.tokens) for p in parsed),
        "attributes_claimed": {k: v / len(parsed) for k, v in attributes.most_common()},
        "labelled": len(labels),
        "labelled_claims": wanted,
        "precision": right / said if said else float("nan"),
        "recall": right / wanted if wanted else float("nan"),
    }


def _env(user: str, args: Args, captions: Path) -> DialogRetrievalVectorEnv:
    kwargs = {"captions": captions} if user == "corpus" else {}
    return DialogRetrievalVectorEnv(num_envs=args.batch, split="test", max_turns=10, user=user, user_kwargs=kwargs)


def corpus_figures(args: Args, captions: Path) -> dict[str, Any]:
    """Real-caption share and step costs of the corpus user against the rule-based user."""
    envs = {name: _env(name, args, captions) for name in ("rule", "corpus")}
    for env in envs.values():
        env.reset(seed=args.seed)
    corpus_user = envs["corpus"].user
    corpus_user.reset_counts()
    num_actions = envs["rule"].single_action_space.n
    actions = np.random.default_rng(args.seed).integers(num_actions, size=(args.steps, args.batch))
    step_ms: dict[str, list[float]] = {"rule": [], "corpus": []}
    for step in range(args.steps):
        order = ("rule", "corpus") if step % 2 == 0 else ("corpus", "rule")
        for name in order:
            start = time.perf_counter()
            envs[name].step(actions[step])
            step_ms[name].append(1e3 * (time.perf_counter() - start))
    counts = dict(corpus_user.counts)
    # describe alone, on the pairs of fresh dialogs (the memo sees new pairs as dialogs go on)
    describe_ms: dict[str, list[float]] = {"rule": [], "corpus": []}
    split = envs["rule"].model.catalog  # the test split the dialogs play on
    rng = np.random.default_rng(args.seed + 1)
    users = {name: env.user for name, env in envs.items()}
    for step in range(args.steps):
        targets = rng.integers(split.num_images, size=args.batch)
        shown = rng.integers(split.num_images, size=args.batch)
        for name in ("rule", "corpus") if step % 2 == 0 else ("corpus", "rule"):
            rngs = [np.random.default_rng([args.seed, step, b]) for b in range(args.batch)]
            start = time.perf_counter()
            users[name].describe(split, targets, shown, rngs)
            describe_ms[name].append(1e3 * (time.perf_counter() - start))
    median = {name: statistics.median(values) for name, values in step_ms.items()}
    result = {
        "batch": args.batch,
        "steps": args.steps,
        "turns": counts["real"] + counts["fallback"],
        "real_caption_share": counts["real"] / (counts["real"] + counts["fallback"]),
        "usable_captions": corpus_user.usable,
        "records": corpus_user.records,
        "vocabulary": len(corpus_user.vocabulary),
        "step_ms_median": median,
        "cost_ratio": median["corpus"] / median["rule"],
    }
    describe_median = {name: statistics.median(values) for name, values in describe_ms.items()}
    result["describe_ms_median"] = describe_median
    result["describe_ratio"] = describe_median["corpus"] / describe_median["rule"]
    return result


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report."""
    p, c = report["parser"], report["corpus"]
    ok = {True: "met", False: "**missed**"}
    lines = [
        "# The caption parser and the corpus user on the real Shoes captions",
        "",
        f"Command: `{report['command']}`",
        "",
        f"## Parser, on the {p['captions']:,} train captions",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        f"| captions with at least one claim | {100 * p['with_claims']:.1f}% | >= 80% "
        f"({ok[p['with_claims'] >= GOALS['with_claims']]}) |",
        f"| captions fully parsed (claims, no unparsed word) | {100 * p['fully_parsed']:.1f}% | |",
        f"| claims per caption (mean) | {p['mean_claims']:.2f} | |",
        f"| word occurrences left unparsed (content words) | {100 * p['unparsed_word_share']:.1f}% | |",
        f"| precision of the claims, {p['labelled']} hand-labelled captions | {100 * p['precision']:.1f}% | |",
        f"| recall of the labelled claims ({p['labelled_claims']}) | {100 * p['recall']:.1f}% | |",
        "",
        "Attributes claimed (share of captions): "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["attributes_claimed"].items())
        + ".",
        "",
        f"## Corpus user, {c['batch']} dialogs x {c['steps']} vector steps (test split, random shown images)",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        f"| turns answered with a real caption | {100 * c['real_caption_share']:.1f}% of {c['turns']:,} | >= 70% "
        f"({ok[c['real_caption_share'] >= GOALS['real_caption_share']]}) |",
        f"| captions it can say | {c['usable_captions']:,} of {c['records']:,} | |",
        f"| vocabulary (captions and fallback) | {c['vocabulary']:,} words | |",
        f"| vector step, median ms: rule / corpus | {c['step_ms_median']['rule']:.2f} / "
        f"{c['step_ms_median']['corpus']:.2f} | |",
        f"| step cost ratio corpus / rule | {c['cost_ratio']:.2f}x | <= 2x "
        f"({ok[c['cost_ratio'] <= GOALS['cost_ratio']]}) |",
    ]
    d = c["describe_ms_median"]
    lines.append(
        f"| describe alone on fresh pairs, median ms: rule / corpus (ratio) | {d['rule']:.2f} / {d['corpus']:.2f} "
        f"({c['describe_ratio']:.2f}x) | |"
    )
    machine = report["machine"]
    lines += ["", f"Machine: {machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} CPUs (shared).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the report; 0 when every goal is met, 1 when not, 2 without data."""
    parser = dataclass_parser(Args, "The caption parser and the corpus user on the real Shoes captions.")
    args = Args(**vars(parser.parse_args(argv)))
    captions = Path(args.data) / CAPTIONS_FILE
    try:
        texts = read_caption_texts(captions, non_ascii="transliterate")
    except DialogEnvError as error:
        print(f"error: real captions not readable: {error} (pass --data DIR with the Shoes captions)", file=sys.stderr)
        return 2
    labels_document = json.loads(Path(args.labels).read_text())
    if labels_document.get("records") != len(texts):
        print(
            f"error: the labels in {args.labels} are for a file of {labels_document.get('records')} records, "
            f"{captions} has {len(texts)}",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    print(f"parsing {len(texts):,} captions ...", flush=True)
    report: dict[str, Any] = {"parser": parser_figures(texts, labels_document["labels"])}
    print(f"stepping {args.batch} dialogs x {args.steps} steps with the rule and the corpus users ...", flush=True)
    report["corpus"] = corpus_figures(args, captions)
    report["goals"] = GOALS
    report["command"] = "python " + " ".join(["benchmarks/corpus_user.py", *(sys.argv[1:] if argv is None else argv)])
    report["machine"] = machine_info()
    report["wall_seconds"] = time.perf_counter() - start
    markdown = to_markdown(report)
    print(markdown)
    write_report(args.out, "corpus_user", report, markdown)
    met = (
        report["parser"]["with_claims"] >= GOALS["with_claims"]
        and report["corpus"]["real_caption_share"] >= GOALS["real_caption_share"]
        and report["corpus"]["cost_ratio"] <= GOALS["cost_ratio"]
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
