"""How much do the user simulators talk like real shoppers?

Every user simulator (``--users``, default: rule, rule-rich (the rule-based user with
``phrasing="rich"``), relative-attribute, captioner, corpus) captions
the same pairs of the synthetic catalogue (train split), drawn like the real data (the target and
the reference are of the same category 93% of the time), with the same per-dialog generators
(stream ``realism_dialogs``), through the generic :meth:`UserSimulator.describe
<dialog_env.users.UserSimulator.describe>`. Their captions are compared with the real Shoes
relative captions (train split, ``../shared/data/shoes/`` by default), and the report goes to
``benchmarks/results/simulator_realism.md`` and ``.json``.

Measured per user, against the real captions:

- caption length in words: mean, median, a histogram of word counts 1..14 and 15+, and the
  Jensen-Shannon divergence between the simulated and the real length distributions;
- the Jensen-Shannon divergence between the simulated and the real unigram word distributions
  (both divergences in base 2, so in [0, 1]: 0 for identical distributions, 1 for disjoint ones);
- the distinct words used, and the size of the user's vocabulary;
- *coverage*: the share of real caption word occurrences whose word is in the user's vocabulary
  (goal: at least 90%);
- *precision*: the share of the user's word occurrences whose word real shoppers also use
  (goal: at least 95%: no invented jargon);
- for users whose ``explain`` method gives :class:`~dialog_env.users.Feedback` (rule,
  relative-attribute): how many differences a caption states, and which attributes.

The users:

- ``captioner`` uses ``--captioner-checkpoint`` (a ``train_captioner.py`` checkpoint) when given;
  otherwise a small captioner is trained here first, on pairs captioned by the rule-based user
  (``--captioner-pairs``, ``--captioner-epochs``; about a minute on a CPU core), so it can say no
  more words than the rule-based user;
- ``corpus`` answers with real captions, read from the same train file; it is skipped when
  ``dialog_env.users`` does not register it (or it cannot be built), with the reason in the
  report. Any user that cannot be built or cannot describe the catalogue is skipped the same way.

Usage::

    python benchmarks/simulator_realism.py [--data ../shared/data/shoes] [--pairs 20000] [--seed 0] \
        [--users rule relative-attribute captioner corpus] [--captioner-checkpoint runs/captioner/best.pt]

Exit status: 0 when at least one user was measured and every measured user meets both goals, 1
otherwise, 2 when the real captions cannot be read.

The real captions are read, never copied: the report holds aggregate numbers, the simulated users'
own sample captions, and at most a handful of words per user as diagnostics; the corpus user's
captions are real ones, so they are not reproduced.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.cli import dataclass_parser
from dialog_env.data.captions import read_caption_texts
from dialog_env.errors import ConfigurationError, DialogEnvError
from dialog_env.random_streams import stream
from dialog_env.synthetic import SAME_CATEGORY_SHARE, default_catalog, draw_pairs
from dialog_env.text import tokenize
from dialog_env.users import Feedback, RuleBasedUser, UserSimulator, make_user

try:  # scipy is optional (it comes with the "curves" extra); the formula below is the fallback
    from scipy.spatial.distance import jensenshannon as _scipy_jensenshannon
except ImportError:  # pragma: no cover - depends on the environment
    _scipy_jensenshannon = None

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/simulator_realism.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

COVERAGE_GOAL = 0.90
PRECISION_GOAL = 0.95
#: Bins of the length histogram: 1, 2, ..., 14 words, and 15 or more (a caption of no word counts as 1).
LENGTH_BINS = 15
LENGTH_LABELS = [str(n) for n in range(1, LENGTH_BINS)] + [f"{LENGTH_BINS}+"]
DEFAULT_USERS = ("rule", "rule-rich", "relative-attribute", "captioner", "corpus")
#: Users whose captions are real shoppers' captions: measured, never reproduced in the report.
REAL_CAPTION_USERS = frozenset({"corpus"})
SAMPLES = 8
DIAGNOSTIC_WORDS = 5
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "shoes"
RESULTS = ROOT / "benchmarks" / "results"
RELATIVE_CAPTIONS = "relative_captions_shoes.train.json"


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    data: Path = DEFAULT_DATA
    """Folder with the Shoes caption JSON files."""
    pairs: int = 20_000
    """Simulated pairs (the same ones for every user)."""
    seed: int = 0
    """Seed of the pairs, the captions and the small captioner's training."""
    users: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_USERS))
    """User simulators to compare, by registered name."""
    captioner_checkpoint: Path | None = None
    """Captioner checkpoint (train_captioner.py's best.pt); without it a small captioner is trained here."""
    captioner_decoding: Literal["greedy", "sample"] = "greedy"
    """Decoding of the captioner user."""
    captioner_pairs: int = 20_000
    """Small captioner (no --captioner-checkpoint): training pairs captioned by the rule-based user."""
    captioner_epochs: int = 5
    """Small captioner (no --captioner-checkpoint): passes over its training pairs."""
    progress: bool = True
    """Show the small captioner's training progress bars."""
    out: Path = RESULTS
    """Folder for simulator_realism.md and simulator_realism.json."""


def load_real_captions(data_dir: Path) -> list[str]:
    """The relative captions of ``relative_captions_shoes.train.json`` in ``data_dir``.

    Raises:
        CaptionNotFoundError: the file is missing (with the path looked at).
        CaptionFormatError: a malformed file or record (naming the record).
    """
    return read_caption_texts(Path(data_dir) / RELATIVE_CAPTIONS, kind="relative")


# ---------------------------------------------------------------------------- the measures
def js_divergence(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (base 2): 0 when equal, 1 when disjoint.

    Args:
        p: ``(K,)`` non-negative weights (counts or probabilities), not all zero; normalised here.
        q: ``(K,)`` the same, over the same ``K`` outcomes.

    Raises:
        ConfigurationError: shapes differ, a weight is negative or not finite, or a side is all zero.
    """
    p, q = _distribution(p, "p"), _distribution(q, "q")
    if p.shape != q.shape:
        raise ConfigurationError(
            f"js_divergence needs distributions over the same outcomes, got {p.shape} and {q.shape}"
        )
    if _scipy_jensenshannon is None:
        return _js_divergence_numpy(p, q)
    # scipy returns the Jensen-Shannon *distance*, the square root of the divergence; rounding can
    # make the sum under its root a hair below 0 (nan) for equal distributions.
    distance = float(_scipy_jensenshannon(p, q, base=2))
    return float(np.clip(0.0 if np.isnan(distance) else distance**2, 0.0, 1.0))


def _distribution(weights: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """``weights`` as a float64 probability vector, or a clear error."""
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 1 or not np.isfinite(array).all() or (array < 0).any() or array.sum() <= 0:
        raise ConfigurationError(
            f"js_divergence: {name} must be a 1-D array of finite non-negative weights, not all zero; got {array!r}"
        )
    return array / array.sum()


def _js_divergence_numpy(p: np.ndarray, q: np.ndarray) -> float:
    """:func:`js_divergence` of two probability vectors, with NumPy only."""
    middle = (p + q) / 2

    def kl_to_middle(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / middle[mask])))

    return float(np.clip((kl_to_middle(p) + kl_to_middle(q)) / 2, 0.0, 1.0))


def js_implementation() -> str:
    """Which code computes :func:`js_divergence` here (for the report)."""
    if _scipy_jensenshannon is None:
        return "numpy formula"
    return "scipy.spatial.distance.jensenshannon(base=2), squared (scipy returns the distance)"


@dataclass(frozen=True)
class TextStatistics:
    """Word counts of a set of captions.

    Attributes:
        lengths: ``(M,) int64`` words per caption (:func:`~dialog_env.text.tokenize`).
        words: word -> occurrences over all captions.
    """

    lengths: np.ndarray
    words: collections.Counter[str]

    @classmethod
    def of(cls, captions: Iterable[str]) -> TextStatistics:
        """The statistics of ``captions``."""
        tokens = [tokenize(caption) for caption in captions]
        return cls(
            np.array([len(t) for t in tokens], dtype=np.int64), collections.Counter(w for t in tokens for w in t)
        )

    def length_histogram(self) -> np.ndarray:
        """``(LENGTH_BINS,) int64`` captions of 1, 2, ..., 14 and 15+ words (none counts as 1)."""
        return np.bincount(np.clip(self.lengths, 1, LENGTH_BINS) - 1, minlength=LENGTH_BINS)

    def summary(self) -> dict[str, Any]:
        """Captions, mean and median words, the length histogram and the distinct words, JSON-ready."""
        return {
            "captions": int(self.lengths.size),
            "mean_words": float(np.mean(self.lengths)),
            "median_words": float(np.median(self.lengths)),
            "length_histogram": dict(zip(LENGTH_LABELS, self.length_histogram().tolist(), strict=True)),
            "distinct_words": len(self.words),
        }


def coverage(real_words: Mapping[str, int], vocabulary: Iterable[str]) -> float:
    """The share of real word occurrences whose word is in ``vocabulary`` (0 without real words)."""
    known = set(vocabulary)
    total = sum(real_words.values())
    return sum(n for w, n in real_words.items() if w in known) / total if total else 0.0


def precision(simulated_words: Mapping[str, int], real_words: Mapping[str, int]) -> float:
    """The share of simulated word occurrences whose word real shoppers also use (0 without any)."""
    total = sum(simulated_words.values())
    return sum(n for w, n in simulated_words.items() if real_words.get(w, 0) > 0) / total if total else 0.0


def word_js_divergence(simulated_words: Mapping[str, int], real_words: Mapping[str, int]) -> float:
    """:func:`js_divergence` of the two unigram word distributions, over the union of their words."""
    words = sorted(set(simulated_words) | set(real_words))
    return js_divergence([simulated_words.get(w, 0) for w in words], [real_words.get(w, 0) for w in words])


def measure(
    real_captions: Sequence[str] | TextStatistics,
    user: UserSimulator | None = None,
    catalog: Catalog | None = None,
    num_pairs: int = 20_000,
    seed: int = 0,
    reproduce_samples: bool = True,
) -> dict[str, Any]:
    """Compare one user's captions with real ones.

    The user captions ``num_pairs`` pairs drawn by :func:`~dialog_env.synthetic.draw_pairs` from
    ``np.random.default_rng(seed)``, pair ``i`` with the generator ``stream(seed,
    "realism_dialogs", i)``: the same pairs and draws for every user of one seed.

    Args:
        real_captions: the real captions, or their :class:`TextStatistics`.
        user: the simulator (default: the rule-based user).
        catalog: the catalogue of the pairs (default: the synthetic catalogue's train split).
        num_pairs: pairs captioned.
        seed: seed of the pairs and of the per-dialog generators.
        reproduce_samples: keep sample captions (``False`` for a user that says real captions).

    Returns:
        A JSON-ready dict: ``real`` and ``simulated`` (:meth:`TextStatistics.summary`, the
        simulated side with ``vocabulary_size``, ``samples`` and for users with ``explain`` the
        ``differences_said`` and ``attributes_said`` shares), ``length_js``, ``word_js``,
        ``coverage``, ``precision``, ``goals``, ``met`` and a few diagnostic words.

    Raises:
        DialogEnvError: the user cannot describe ``catalog`` (e.g. it lacks the attributes it needs).
    """
    user = user or RuleBasedUser()
    catalog = catalog or default_catalog().select("train")
    real = real_captions if isinstance(real_captions, TextStatistics) else TextStatistics.of(real_captions)
    user.check_catalog(catalog)
    targets, references = draw_pairs(catalog, num_pairs, np.random.default_rng(seed))

    def dialog_rngs() -> list[np.random.Generator]:
        return [stream(seed, "realism_dialogs", i) for i in range(num_pairs)]

    captions = user.describe(catalog, targets, references, dialog_rngs())
    simulated = TextStatistics.of(captions)
    vocabulary = user.vocabulary.words
    cover, precise = coverage(real.words, vocabulary), precision(simulated.words, real.words)
    summary = simulated.summary()
    summary.pop("distinct_words")
    summary.update(distinct_words_used=len(simulated.words), vocabulary_size=len(vocabulary))
    summary["samples"] = captions[:SAMPLES] if reproduce_samples else None
    explain = getattr(user, "explain", None)
    if callable(explain):  # the rule-based and relative-attribute users say what each caption states
        feedback = explain(catalog, targets, references, dialog_rngs())
        if all(isinstance(f, Feedback) for f in feedback):
            summary.update(_statement_shares(feedback))
    return {
        "num_pairs": num_pairs,
        "seed": seed,
        "real": real.summary(),
        "simulated": summary,
        "length_js": js_divergence(simulated.length_histogram(), real.length_histogram()),
        "word_js": word_js_divergence(simulated.words, real.words),
        "coverage": cover,
        "precision": precise,
        "goals": {"coverage": COVERAGE_GOAL, "precision": PRECISION_GOAL},
        "met": {"coverage": cover >= COVERAGE_GOAL, "precision": precise >= PRECISION_GOAL},
        # Diagnostics only: a few words, not the real data.
        "words_unused_by_shoppers": None
        if not reproduce_samples
        else [w for w, _ in simulated.words.most_common() if w not in real.words][:DIAGNOSTIC_WORDS],
        "most_frequent_uncovered_real_words": None
        if not reproduce_samples
        else [w for w, _ in real.words.most_common() if w not in set(vocabulary)][:DIAGNOSTIC_WORDS],
    }


def _statement_shares(feedback: Sequence[Feedback]) -> dict[str, dict[str, float]]:
    """Shares of captions by number of differences stated, and by attribute mentioned."""
    count = max(len(feedback), 1)
    differences = collections.Counter(len([s for s in f.statements if s.kind == "difference"]) for f in feedback)
    attributes = collections.Counter(s.attribute for f in feedback for s in f.statements)
    return {
        "differences_said": {str(k): v / count for k, v in sorted(differences.items())},
        "attributes_said": {k: v / count for k, v in attributes.most_common()},
    }


# ---------------------------------------------------------------------------- the users
@dataclass(frozen=True)
class UserSpec:
    """A user simulator to compare, built on demand.

    Attributes:
        name: the name in the report.
        build: ``build(catalog) -> (user, details)``; ``details`` go to the JSON report, its
            ``"about"`` entry (how the user was made) to the Markdown too. Raises
            :class:`~dialog_env.errors.DialogEnvError` when the user cannot be built.
        real_captions: the user answers with real captions: measured, never reproduced.
    """

    name: str
    build: Callable[[Catalog], tuple[UserSimulator, dict[str, Any]]]
    real_captions: bool = False


def user_specs(args: Args) -> list[UserSpec]:
    """The :class:`UserSpec` of every name in ``args.users`` (an unknown name fails when built)."""
    builders: dict[str, Callable[[Catalog], tuple[UserSimulator, dict[str, Any]]]] = {
        "captioner": lambda catalog: _captioner(catalog, args),
        "corpus": lambda _catalog: _corpus(Path(args.data) / RELATIVE_CAPTIONS),
        "rule-rich": lambda _catalog: (
            make_user("rule", phrasing="rich"),
            {"about": "the rule-based user with `user_kwargs={'phrasing': 'rich'}`"},
        ),
    }
    return [
        UserSpec(
            name,
            builders.get(name, lambda _catalog, name=name: (make_user(name), {})),
            real_captions=name in REAL_CAPTION_USERS,
        )
        for name in args.users
    ]


def _corpus(captions: Path) -> tuple[UserSimulator, dict[str, Any]]:
    """The corpus user over ``captions``, the file the real figures come from."""
    about = f"answers with real captions of `{captions.name}`, the file the real figures come from"
    return make_user("corpus", captions=captions), {"about": about, "captions": captions.name}


def _captioner(catalog: Catalog, args: Args) -> tuple[UserSimulator, dict[str, Any]]:
    """The captioner user: from ``--captioner-checkpoint``, or a small one trained on ``catalog``."""
    if args.captioner_checkpoint is not None:
        user = make_user("captioner", checkpoint=args.captioner_checkpoint, decoding=args.captioner_decoding)
        about = f"checkpoint `{args.captioner_checkpoint}`, {args.captioner_decoding} decoding"
        return user, {"about": about, "checkpoint": str(args.captioner_checkpoint)}
    print(
        f"  no --captioner-checkpoint: training a small captioner on {args.captioner_pairs:,} pairs captioned by the "
        f"rule-based user ({args.captioner_epochs} epoch(s)) ...",
        flush=True,
    )
    user, training = train_small_captioner(
        catalog,
        pairs=args.captioner_pairs,
        epochs=args.captioner_epochs,
        seed=args.seed,
        decoding=args.captioner_decoding,
        progress=args.progress,
    )
    about = (
        f"a small captioner trained here (no `--captioner-checkpoint`) on {training['pairs']:,} pairs of the train "
        f"split captioned by the rule-based user: {training['epochs']} epoch(s), batch {training['batch_size']}, Adam "
        f"lr {training['lr']:g}, embedding {training['embed_dim']}, hidden {training['hidden_dim']}, no attention, "
        f"seed {training['seed']}, final training loss {training['losses'][-1]:.3f} nats per token, "
        f"{training['seconds']:.0f} s; {args.captioner_decoding} decoding. Not the paper's captioner, trained on real "
        f"captions: it can say no word the rule-based user cannot"
    )
    return user, {"about": about, "training": training}


def train_small_captioner(
    catalog: Catalog,
    *,
    pairs: int = 20_000,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    embed_dim: int = 64,
    hidden_dim: int = 128,
    seed: int = 0,
    decoding: str = "greedy",
    progress: bool = False,
) -> tuple[UserSimulator, dict[str, Any]]:
    """A small relative captioner, trained on captions of the rule-based user, as a user simulator.

    The same data and training steps as ``train_captioner.py``'s default (pairs from the stream
    ``captioner_pairs``, batches from ``captioner_batches`` of ``seed``), smaller, without a
    validation split, on one torch thread (faster on busy cores); torch's global random state is
    left as it was.

    Args:
        catalog: the split to train on (needs the shoe attributes).
        pairs: training pairs.
        epochs: passes over them.
        batch_size: pairs per optimiser step.
        lr: Adam learning rate.
        embed_dim: word-embedding dimension.
        hidden_dim: LSTM state dimension.
        seed: seed of the pairs, the initialisation and the batches.
        decoding: the user's decoding, ``"greedy"`` or ``"sample"``.
        progress: show progress bars.

    Returns:
        ``(user, training)``: the :class:`~dialog_env.users.captioner.CaptionerUser` and the
        settings, per-epoch training losses (nats per token) and seconds, JSON-ready.
    """
    import torch  # noqa: PLC0415 - only this user needs torch

    from dialog_env.users.captioner import (  # noqa: PLC0415
        CaptionerConfig,
        CaptionerUser,
        RelativeCaptioner,
        catalog_probe,
        train_epoch,
    )
    from dialog_env.users.captioner_data import synthetic_pairs  # noqa: PLC0415

    if pairs < 1 or epochs < 1:
        raise ConfigurationError(f"the small captioner needs pairs >= 1 and epochs >= 1, got {pairs} and {epochs}")
    start = time.perf_counter()
    rule = RuleBasedUser()
    rule.check_catalog(catalog)
    data = synthetic_pairs(catalog, pairs, seed, rule)
    threads = torch.get_num_threads()
    losses = []
    try:
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            config = CaptionerConfig(
                image_dim=catalog.dim, vocab_size=len(rule.vocabulary), embed_dim=embed_dim, hidden_dim=hidden_dim
            )
            model = RelativeCaptioner(config)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            batches = stream(seed, "captioner_batches")
            for epoch in range(1, epochs + 1):
                order = batches.permutation(len(data))
                description = f"small captioner, epoch {epoch}/{epochs}"
                losses.append(
                    train_epoch(
                        model,
                        optimizer,
                        catalog,
                        data,
                        order,
                        batch_size,
                        torch.device("cpu"),
                        progress=progress,
                        description=description,
                    )
                )
    finally:
        torch.set_num_threads(threads)
    user = CaptionerUser(
        model=model.eval(), vocabulary=rule.vocabulary, probe=catalog_probe(catalog), decoding=decoding
    )
    training = {
        "pairs": pairs,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "embed_dim": embed_dim,
        "hidden_dim": hidden_dim,
        "seed": seed,
        "decoding": decoding,
        "captions_by": "rule",
        "losses": losses,
        "seconds": time.perf_counter() - start,
    }
    return user, training


def compare(
    real_captions: Sequence[str],
    specs: Sequence[UserSpec],
    catalog: Catalog | None = None,
    num_pairs: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`measure` every user of ``specs`` on the same pairs; a user that cannot be built or measured is skipped.

    Returns:
        A JSON-ready dict: ``real`` (:meth:`TextStatistics.summary`), ``users`` (name -> the
        user's part of :func:`measure`'s result and its build details), ``skipped`` (name -> the
        reason), ``met`` (at least one user measured and every one meets both goals), and the
        settings.
    """
    catalog = catalog or default_catalog().select("train")
    real = TextStatistics.of(real_captions)
    users: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        start = time.perf_counter()
        print(f"measuring user {spec.name!r} ...", flush=True)
        try:
            user, details = spec.build(catalog)
            result = measure(real, user, catalog, num_pairs, seed, reproduce_samples=not spec.real_captions)
        except DialogEnvError as error:
            skipped[spec.name] = f"{type(error).__name__}: {error}"
            print(f"  skipped: {skipped[spec.name]}", flush=True)
            continue
        for shared in ("num_pairs", "seed", "real", "goals"):
            result.pop(shared)
        users[spec.name] = {
            **result,
            "real_captions": spec.real_captions,
            **details,
            "seconds": time.perf_counter() - start,
        }
    return {
        "num_pairs": num_pairs,
        "seed": seed,
        "catalog": catalog.name,
        "same_category_share": SAME_CATEGORY_SHARE,
        "js_divergence": {"base": 2, "implementation": js_implementation()},
        "length_bins": LENGTH_LABELS,
        "goals": {"coverage": COVERAGE_GOAL, "precision": PRECISION_GOAL},
        "real": real.summary(),
        "users": users,
        "skipped": skipped,
        "met": bool(users) and all(all(u["met"].values()) for u in users.values()),
    }


# ---------------------------------------------------------------------------- the report
def to_markdown(result: dict[str, Any], command: str) -> str:
    """The Markdown report of :func:`compare`'s result."""
    real, goals = result["real"], result["goals"]
    lines = [
        "# Simulator realism: every user simulator against real shoppers",
        "",
        f"Command: `{command}`",
        "",
        f"{result['num_pairs']:,} pairs of the synthetic catalogue (train split), the reference of the target's "
        f"category {100 * result['same_category_share']:.0f}% of the time, as in the real data, the same pairs and "
        f"per-dialog generators for every user; compared with the {real['captions']:,} real relative captions of the "
        f"Shoes train split.",
        "",
        "Length JS and word JS: Jensen-Shannon divergence (base 2, so 0 = same distribution, 1 = disjoint) of the "
        "caption length distribution (1..14, 15+ words) and of the unigram word distribution, against real shoppers. "
        f"Coverage: real word occurrences whose word the user's vocabulary holds (goal >= "
        f"{100 * goals['coverage']:.0f}%). Precision: the user's word occurrences that real shoppers also use (goal "
        f">= {100 * goals['precision']:.0f}%).",
        "",
        "| user | mean words | median | length JS | word JS | distinct words used / vocabulary | coverage "
        "| precision | goals met? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, user in result["users"].items():
        sim = user["simulated"]
        missed = [goal for goal, met in user["met"].items() if not met]
        lines.append(
            f"| {name} | {sim['mean_words']:.2f} | {sim['median_words']:g} | {user['length_js']:.3f} | "
            f"{user['word_js']:.3f} | {sim['distinct_words_used']} / {sim['vocabulary_size']} | "
            f"{100 * user['coverage']:.1f}% | {100 * user['precision']:.1f}% | "
            f"{'yes' if not missed else '**no**: ' + ', '.join(missed)} |"
        )
    for name in result["skipped"]:
        lines.append(f"| {name} | skipped (below) | | | | | | | |")
    lines += [
        f"| real shoppers | {real['mean_words']:.2f} | {real['median_words']:g} | 0 | 0 | {real['distinct_words']} "
        "distinct | | | |",
        "",
        "Length histogram (share of captions with 1, 2, ..., 14, 15+ words):",
        "",
        "| user | " + " | ".join(result["length_bins"]) + " |",
        "| --- |" + " --- |" * len(result["length_bins"]),
    ]
    rows = [(name, user["simulated"]["length_histogram"]) for name, user in result["users"].items()]
    for name, histogram in [*rows, ("real shoppers", real["length_histogram"])]:
        total = max(sum(histogram.values()), 1)
        lines.append(f"| {name} | " + " | ".join(f"{100 * n / total:.0f}%" for n in histogram.values()) + " |")
    if result["skipped"]:
        lines += ["", "Skipped users:", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in result["skipped"].items()]
    for name, user in result["users"].items():
        sim = user["simulated"]
        lines += ["", f"## {name}", ""]
        if user.get("about"):
            lines += [f"How it was made: {user['about']}.", ""]
        if "differences_said" in sim:
            lines += [
                "Differences said per caption: "
                + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in sim["differences_said"].items())
                + ". Attributes said (share of captions): "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sim["attributes_said"].items())
                + ".",
                "",
            ]
        if user["real_captions"]:
            lines.append("Sample captions: (real captions, not reproduced)")
            continue
        lines += [
            "Words shoppers never use: " + (", ".join(user["words_unused_by_shoppers"]) or "none") + ". "
            "Most frequent shopper words it cannot say (diagnostic): "
            + (", ".join(user["most_frequent_uncovered_real_words"]) or "none")
            + ".",
            "",
            "Sample captions:",
            "",
            *[f"- {text}" for text in sim["samples"]],
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the report; see the module docstring for the exit status."""
    parser = dataclass_parser(Args, "Compare the user simulators' captions with real shoppers'.")
    args = Args(**vars(parser.parse_args(argv)))
    for name in ("pairs", "captioner_pairs", "captioner_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    start = time.perf_counter()
    print(f"reading real captions from {args.data} ...", flush=True)
    try:
        real = load_real_captions(args.data)
    except DialogEnvError as error:
        print(f"error: real captions not readable: {error} (pass --data DIR with the Shoes captions)", file=sys.stderr)
        return 2
    print(f"simulating {args.pairs:,} captions per user: {', '.join(args.users)} ...", flush=True)
    result = compare(real, user_specs(args), num_pairs=args.pairs, seed=args.seed)
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python", "benchmarks/simulator_realism.py", *arguments])
    result["command"] = command
    result["machine"] = machine_info()
    result["wall_seconds"] = time.perf_counter() - start
    markdown = to_markdown(result, command)
    print(markdown)
    write_report(args.out, "simulator_realism", result, markdown)
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
