"""How much does the rule-based user talk like real shoppers?

Compares captions of the rule-based user on pairs of the synthetic catalogue, drawn like the real
data (the target and the reference are of the same category 93% of the time), with the real Shoes
relative captions (train split, ``../shared/data/shoes/`` by default), and writes
``benchmarks/results/simulator_realism.md`` and ``.json``.

Measured:

- mean caption length in words (real shoppers: 5.3 on the full release);
- *coverage*: the share of real caption word occurrences whose word the simulator can say
  (goal: at least 75%);
- *precision*: the share of the simulator's word occurrences that real shoppers also use
  (goal: at least 90%: no invented jargon).

Usage::

    python benchmarks/simulator_realism.py [--data ../shared/data/shoes] [--pairs 20000] [--seed 0]

The real captions are read, never copied: the report holds aggregate numbers, the simulator's own
sample captions, and at most a handful of words as diagnostics.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.cli import dataclass_parser
from dialog_env.data.captions import read_caption_texts
from dialog_env.errors import DialogEnvError
from dialog_env.random_streams import stream
from dialog_env.synthetic import SAME_CATEGORY_SHARE, default_catalog, draw_pairs
from dialog_env.text import tokenize
from dialog_env.users import RuleBasedUser

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/simulator_realism.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

COVERAGE_GOAL = 0.75
PRECISION_GOAL = 0.90
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "shoes"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    data: Path = DEFAULT_DATA
    """Folder with the Shoes caption JSON files."""
    pairs: int = 20_000
    """Simulated pairs."""
    seed: int = 0
    """Seed of the pairs and the captions."""
    out: Path = RESULTS
    """Folder for simulator_realism.md and simulator_realism.json."""


def load_real_captions(data_dir: Path) -> list[str]:
    """The relative captions of ``relative_captions_shoes.train.json`` in ``data_dir``.

    Raises:
        CaptionNotFoundError: the file is missing (with the path looked at).
        CaptionFormatError: a malformed file or record (naming the record).
    """
    return read_caption_texts(Path(data_dir) / "relative_captions_shoes.train.json", kind="relative")


def measure(
    real_captions: Sequence[str],
    user: RuleBasedUser | None = None,
    catalog: Catalog | None = None,
    num_pairs: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare simulated with real captions. Returns a JSON-ready dict of the figures."""
    user = user or RuleBasedUser()
    catalog = catalog or default_catalog().select("train")
    rng = np.random.default_rng(seed)
    targets, references = draw_pairs(catalog, num_pairs, rng)
    dialog_rngs = [stream(seed, "realism_dialogs", i) for i in range(num_pairs)]
    feedback = user.explain(catalog, targets, references, dialog_rngs)
    simulated = [f.text for f in feedback]

    real_tokens = [tokenize(c) for c in real_captions]
    sim_tokens = [tokenize(c) for c in simulated]
    real_counts = collections.Counter(w for tokens in real_tokens for w in tokens)
    sim_counts = collections.Counter(w for tokens in sim_tokens for w in tokens)
    vocabulary = set(user.vocabulary.words)
    coverage = sum(n for w, n in real_counts.items() if w in vocabulary) / sum(real_counts.values())
    precision = sum(n for w, n in sim_counts.items() if w in real_counts) / sum(sim_counts.values())
    statements = collections.Counter(len([s for s in f.statements if s.kind == "difference"]) for f in feedback)
    said_attributes = collections.Counter(s.attribute for f in feedback for s in f.statements)
    return {
        "num_pairs": num_pairs,
        "seed": seed,
        "same_category_share": SAME_CATEGORY_SHARE,
        "real": {
            "captions": len(real_captions),
            "mean_words": float(np.mean([len(t) for t in real_tokens])),
            "distinct_words": len(real_counts),
        },
        "simulated": {
            "mean_words": float(np.mean([len(t) for t in sim_tokens])),
            "distinct_words_used": len(sim_counts),
            "vocabulary_size": len(vocabulary),
            "differences_said": {str(k): v / num_pairs for k, v in sorted(statements.items())},
            "attributes_said": {k: v / num_pairs for k, v in said_attributes.most_common()},
            "samples": simulated[:12],
        },
        "coverage": coverage,
        "precision": precision,
        "goals": {"coverage": COVERAGE_GOAL, "precision": PRECISION_GOAL},
        "met": {"coverage": coverage >= COVERAGE_GOAL, "precision": precision >= PRECISION_GOAL},
        # Diagnostics only: a few words, not the real data.
        "simulator_words_unused_by_shoppers": [w for w, _ in sim_counts.most_common() if w not in real_counts][:10],
        "most_frequent_uncovered_real_words": [w for w, _ in real_counts.most_common() if w not in vocabulary][:10],
    }


def to_markdown(result: dict[str, Any], command: str) -> str:
    """The Markdown report of :func:`measure`'s result."""
    real, sim = result["real"], result["simulated"]
    ok = {True: "met", False: "**missed**"}
    lines = [
        "# Simulator realism: the rule-based user against real shoppers",
        "",
        f"Command: `{command}`",
        "",
        f"{result['num_pairs']:,} pairs of the synthetic catalogue (train split), the reference of the target's "
        f"category {100 * result['same_category_share']:.0f}% of the time, as in the real data; compared with the "
        f"{real['captions']:,} real relative captions of the Shoes train split.",
        "",
        "| measure | simulator | real shoppers | goal |",
        "| --- | --- | --- | --- |",
        f"| mean caption length (words) | {sim['mean_words']:.2f} | {real['mean_words']:.2f} | close to real |",
        f"| coverage: real word occurrences the simulator's vocabulary covers | {100 * result['coverage']:.1f}% | | "
        f">= {100 * result['goals']['coverage']:.0f}% ({ok[result['met']['coverage']]}) |",
        f"| precision: simulator word occurrences real shoppers also use | {100 * result['precision']:.1f}% | | "
        f">= {100 * result['goals']['precision']:.0f}% ({ok[result['met']['precision']]}) |",
        f"| distinct words | {sim['distinct_words_used']} used, {sim['vocabulary_size']} in vocabulary | "
        f"{real['distinct_words']} | |",
        "",
        "Differences said per caption: "
        + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in sim["differences_said"].items())
        + ".",
        "",
        "Attributes said (share of captions): "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sim["attributes_said"].items())
        + ".",
        "",
        "Simulator words that shoppers never use: "
        + (", ".join(result["simulator_words_unused_by_shoppers"]) or "none")
        + ".",
        "",
        "Most frequent shopper words the simulator cannot say (diagnostic): "
        + ", ".join(result["most_frequent_uncovered_real_words"])
        + ".",
        "",
        "Sample simulator captions:",
        "",
        *[f"- {text}" for text in sim["samples"]],
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the report; 0 when both goals are met, 1 when not, 2 without data."""
    parser = dataclass_parser(Args, "Compare the rule-based user's captions with real shoppers'.")
    args = Args(**vars(parser.parse_args(argv)))
    start = time.perf_counter()
    print(f"reading real captions from {args.data} ...", flush=True)
    try:
        real = load_real_captions(args.data)
    except DialogEnvError as error:
        print(f"error: real captions not readable: {error} (pass --data DIR with the Shoes captions)", file=sys.stderr)
        return 2
    print(f"simulating {args.pairs:,} captions ...", flush=True)
    result = measure(real, num_pairs=args.pairs, seed=args.seed)
    command = "python benchmarks/simulator_realism.py" + (" " + " ".join(argv) if argv else "")
    if argv is None:
        command = "python " + " ".join(["benchmarks/simulator_realism.py", *sys.argv[1:]])
    result["command"] = command
    result["machine"] = machine_info()
    result["wall_seconds"] = time.perf_counter() - start
    markdown = to_markdown(result, command)
    print(markdown)
    write_report(args.out, "simulator_realism", result, markdown)
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
