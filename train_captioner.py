r"""Train the neural relative captioner, the paper's user model, and measure its captions (BLEU).

    python train_captioner.py                   # synthetic catalogue, captions from the rule-based user
    python train_captioner.py --catalog shoes.h5 \
        --relative-captions relative_captions_shoes.train.json \
        --image-captions captions_shoes.train.json --output runs/captioner-shoes

Pairs are split by target image: the validation targets' pairs never train. Every epoch ends with
the teacher-forced validation loss; the epoch with the lowest one is kept as ``best.pt`` (written
atomically, like ``last.pt`` after every epoch). At the end the best model captions held-out pairs
greedily and BLEU-1..4 against the reference captions is computed with NLTK. ``metrics.json`` holds
the losses, BLEU, sample captions and the data counts. The pairs come from
:mod:`dialog_env.users.captioner_data`, the training steps from :mod:`dialog_env.users.captioner`;
every random draw from a named stream of ``--seed`` (:mod:`dialog_env.random_streams`). Use the
result as a shopper with
``gym.make("DialogRetrieval-v0", user="captioner", user_kwargs={"checkpoint": "runs/captioner/best.pt"})``
or ``python train_agent.py --user captioner --user-kwargs '{"checkpoint": "runs/captioner/best.pt"}'``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import dialog_env
from dialog_env.catalog import Catalog
from dialog_env.cli import dataclass_parser
from dialog_env.env import make_catalog
from dialog_env.errors import ConfigurationError, DialogEnvError
from dialog_env.io import atomic_write_json
from dialog_env.random_streams import stream
from dialog_env.runs import RunFolder, check_parent_folder
from dialog_env.text import Vocabulary, corpus_bleu, tokenize
from dialog_env.torch_utils import resolve_device
from dialog_env.users.captioner import (
    CaptionerConfig,
    RelativeCaptioner,
    caption_pairs,
    load_captioner_checkpoint,
    mean_token_loss,
    save_captioner,
    train_epoch,
)
from dialog_env.users.captioner_data import CaptionPairs, real_pairs, split_by_target, synthetic_pairs
from dialog_env.users.rule import RuleBasedUser


@dataclass
class Args:
    """The command line of ``train_captioner.py``: one ``--flag`` per field (the docstrings are its help)."""

    catalog: str | None = None
    """HDF5 catalogue (default: the embedded synthetic catalogue, captioned by the rule-based user)"""
    relative_captions: str | None = None
    """relative-caption JSON in the Shoes format (with --catalog): records {ImageName, ReferenceImageName,
    RelativeCaption}"""
    image_captions: str | None = None
    """single-image caption JSON in the Shoes format (optional, with --relative-captions): records {ImageName,
    Caption}"""
    distant_references: int = 3
    """references paired with each single-image caption, drawn from the visually farther half of the split"""
    split: str = "train"
    """catalogue split whose images the pairs compare"""
    pairs: int = 50_000
    """synthetic data: (target, reference) pairs captioned by the rule-based user"""
    min_word_count: int = 2
    """real captions: words seen fewer times become the unknown word (never generated)"""
    val_fraction: float = 0.05
    """share of the split's images held out as validation targets"""
    epochs: int = 8
    """passes over the training pairs"""
    batch_size: int = 128
    """pairs per optimisation step"""
    lr: float = 1e-3
    """Adam learning rate"""
    embed_dim: int = 128
    """word-embedding dimension"""
    hidden_dim: int = 256
    """LSTM state dimension (256 keeps an environment step with this user affordable on a CPU; the model's cost
    grows with its square)"""
    dropout: float = 0.2
    """dropout on word embeddings and before the output layer"""
    attention: str = "auto"
    """attention over spatial features: auto (when the catalogue has them), on, off"""
    bleu_pairs: int = 1000
    """held-out pairs captioned greedily for BLEU (0: all of them)"""
    seed: int = 1
    """seed of the pairs, the split, the initialisation and the batches"""
    device: str = "auto"
    """torch device: auto (CUDA if available, else CPU), cpu, cuda..."""
    torch_threads: int = 1
    """torch CPU threads (0: torch's default, one per core). One is the default: this small model gains little from
    more, and several threads slow it down about tenfold when other processes share the cores"""
    output: str = "runs/captioner"
    """output folder: best.pt (lowest validation loss), last.pt, metrics.json"""
    overwrite: bool = False
    """replace the checkpoints of an existing output folder"""
    progress: bool = True
    """show progress bars"""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    """Parse and check the command line; a bad value exits with status 2 and a message naming every problem."""
    parser = dataclass_parser(Args, __doc__.splitlines()[0])
    args = Args(**vars(parser.parse_args(argv)))
    problems = []
    for name in ("epochs", "batch_size", "embed_dim", "hidden_dim", "distant_references", "min_word_count", "pairs"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.bleu_pairs < 0 or args.torch_threads < 0:
        problems.append("--bleu-pairs and --torch-threads must be >= 0")
    if not 0 < args.val_fraction < 1:
        problems.append(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        problems.append(f"--lr must be a finite number > 0, got {args.lr}")
    if not 0 <= args.seed <= 2**32 - 1:
        problems.append(f"--seed must be in 0..{2**32 - 1} (2^32 - 1), got {args.seed}")
    if not 0 <= args.dropout < 1:
        problems.append(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.attention not in ("auto", "on", "off"):
        problems.append(f"--attention must be auto, on or off, got {args.attention!r}")
    if (args.relative_captions or args.image_captions) and not args.catalog:
        problems.append("--relative-captions/--image-captions need the --catalog their image names refer to")
    if args.image_captions and not args.relative_captions:
        problems.append("--image-captions needs --relative-captions too (single-image captions only complement them)")
    for check in (lambda: resolve_device(args.device), lambda: check_parent_folder(args.output, "--output")):
        try:
            check()
        except ConfigurationError as error:
            problems.append(str(error))
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0, 2 for a configuration or data error, 130 if interrupted)."""
    args = parse_args(argv)
    try:
        run(args)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: last.pt holds the last finished epoch", file=sys.stderr)
        return 130
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: Args) -> dict[str, Any]:
    """Build the pairs, train, select the best epoch and measure BLEU, in the locked ``--output`` folder.

    Returns:
        The metrics written to ``metrics.json``.
    """
    output = check_parent_folder(args.output, "--output")
    with RunFolder(output, "train_captioner.py") as folder:
        return _train_in(folder, args)


def _train_in(folder: RunFolder, args: Args) -> dict[str, Any]:
    start_time = time.perf_counter()
    output = folder.path
    if (output / "best.pt").exists() and not args.overwrite:
        raise ConfigurationError(
            f"{str(output / 'best.pt')!r} exists: pass --overwrite to replace it, or another --output"
        )
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)

    # The data: pairs of one split, split again by target image.
    full = make_catalog(args.catalog)
    catalog = full.select(args.split)
    pairs, vocabulary, counts, source = _caption_pairs(args, full, catalog)
    validation_rng = stream(args.seed, "captioner_validation_split")
    train, val = split_by_target(pairs, catalog.num_images, args.val_fraction, validation_rng)

    # The model.
    spatial = catalog.spatial_features
    if args.attention == "on" and spatial is None:
        raise ConfigurationError(f"--attention on, but catalogue {full.name!r} has no spatial features")
    attends = spatial is not None and args.attention != "off"
    config = CaptionerConfig(
        image_dim=catalog.dim,
        vocab_size=len(vocabulary),
        spatial_shape=tuple(spatial.shape[1:]) if attends else None,
        embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim,
        dropout=args.dropout,
    )
    model = RelativeCaptioner(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    folder.started()
    attention = f"on {config.spatial_shape}" if attends else "off"
    print(
        f"{source}: {len(train)} training / {len(val)} validation pairs on {catalog.name} ({catalog.num_images} "
        f"images), {len(vocabulary)} token ids, attention {attention}, device {device}",
        flush=True,
    )

    # The loop: keep the epoch of the lowest validation loss as best.pt.
    history: list[dict[str, float]] = []
    best_loss, best_epoch = math.inf, -1
    extra = {"args": dataclasses.asdict(args), "data": counts}
    batch_rng = stream(args.seed, "captioner_batches")
    for epoch in range(1, args.epochs + 1):
        order = batch_rng.permutation(len(train))
        description = f"epoch {epoch}/{args.epochs}"
        train_loss = train_epoch(
            model,
            optimizer,
            catalog,
            train,
            order,
            args.batch_size,
            device,
            progress=args.progress,
            description=description,
        )
        val_loss = mean_token_loss(model, catalog, val, 512, device)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        improved = val_loss < best_loss
        checkpoint = {**extra, "epoch": epoch, "val_loss": val_loss}
        if improved:
            best_loss, best_epoch = val_loss, epoch
            save_captioner(output / "best.pt", model, vocabulary, full, checkpoint)
        save_captioner(output / "last.pt", model, vocabulary, full, checkpoint)
        print(
            f"epoch {epoch}: train loss {train_loss:.4f}, validation loss {val_loss:.4f} per token"
            f"{' (best so far: best.pt)' if improved else ''}",
            flush=True,
        )

    # BLEU of the best epoch's greedy captions of held-out pairs.
    model.load_state_dict(load_captioner_checkpoint(output / "best.pt")["model"])
    if args.bleu_pairs == 0:
        bleu_rows = np.arange(len(val))
    else:
        bleu_rows = stream(args.seed, "captioner_bleu_sample").permutation(len(val))[: args.bleu_pairs]
    bleu_pairs = val.subset(np.sort(bleu_rows))
    hypotheses = caption_pairs(model, catalog, bleu_pairs, vocabulary, device)
    references = [[caption] for caption in bleu_pairs.captions]
    bleu = corpus_bleu(hypotheses, references)
    samples = [{"generated": h, "reference": r[0]} for h, r in list(zip(hypotheses, references, strict=True))[:8]]
    metrics = {
        "command": " ".join(["python", "train_captioner.py", *sys.argv[1:]]),
        "args": dataclasses.asdict(args),
        "data": {
            **counts,
            "train_pairs": len(train),
            "val_pairs": len(val),
            "vocabulary": len(vocabulary),
            "source": source,
            "catalog": full.name,
            "split": args.split,
        },
        "config": dataclasses.asdict(config),
        "history": history,
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "bleu": {
            **bleu,
            "pairs": len(bleu_pairs),
            "references_per_pair": 1,
            "decoding": "greedy",
            "implementation": "nltk corpus_bleu",
        },
        "mean_words": {
            "generated": float(np.mean([len(tokenize(h)) for h in hypotheses])),
            "reference": float(np.mean([len(tokenize(r[0])) for r in references])),
        },
        "samples": samples,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "dialog_env": dialog_env.__version__,
        },
        "wall_seconds": time.perf_counter() - start_time,
    }
    best = {**extra, "epoch": best_epoch, "val_loss": best_loss, "bleu": bleu}
    save_captioner(output / "best.pt", model, vocabulary, full, best)
    atomic_write_json(output / "metrics.json", metrics)
    print(f"\nbest epoch {best_epoch}: validation loss {best_loss:.4f} per token")
    scores = ", ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.1f}" for n in range(1, 5))
    print(f"BLEU on {len(bleu_pairs)} held-out pairs (greedy, NLTK): {scores}")
    for sample in samples[:5]:
        print(f"  generated: {sample['generated']!r:45}  reference: {sample['reference']!r}")
    print(f"wrote {output / 'best.pt'} and {output / 'metrics.json'} ({metrics['wall_seconds']:.0f} s)")
    return metrics


def _caption_pairs(args: Args, full: Catalog, catalog: Catalog) -> tuple[CaptionPairs, Vocabulary, dict[str, Any], str]:
    """The pairs of ``--split``: from caption files, or captioned by the rule-based user.

    Returns:
        ``(pairs, vocabulary, counts, source)``: the counts and the source for ``metrics.json``.
    """
    if args.relative_captions:
        pairs, vocabulary, counts = real_pairs(args, full, catalog, args.seed)
        return pairs, vocabulary, counts, "captions from files"
    user = RuleBasedUser()
    user.check_catalog(catalog)
    print(f"captioning {args.pairs} synthetic pairs with the rule-based user ...", flush=True)
    pairs = synthetic_pairs(catalog, args.pairs, args.seed, user)
    return pairs, user.vocabulary, {"synthetic_pairs": args.pairs}, "rule-based user"


if __name__ == "__main__":
    raise SystemExit(main())
