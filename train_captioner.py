"""Train the neural relative captioner, the paper's user model, and measure its captions (BLEU).

    python train_captioner.py                   # synthetic catalogue, captions from the rule-based user
    python train_captioner.py --catalog shoes.h5 \\
        --relative-captions relative_captions_shoes.train.json \\
        --image-captions captions_shoes.train.json --output runs/captioner-shoes

Pairs are split by target image: the validation targets' pairs never train. Every epoch ends with
the teacher-forced validation loss; the epoch with the lowest one is kept as ``best.pt`` (written
atomically, like ``last.pt`` after every epoch). At the end the best model captions held-out pairs
greedily and BLEU-1..4 against the reference captions is computed with NLTK. ``metrics.json`` holds
the losses, BLEU, sample captions and the data counts. Use the result as a shopper with
``gym.make("DialogRetrieval-v0", user="captioner", user_kwargs={"checkpoint": "runs/captioner/best.pt"})``
or ``python train_agent.py --user captioner --user-kwargs '{"checkpoint": "runs/captioner/best.pt"}'``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

import dialog_env
from dialog_env.catalog import Catalog
from dialog_env.cli import dataclass_parser
from dialog_env.env import make_catalog
from dialog_env.errors import ConfigurationError, DialogEnvError
from dialog_env.io import atomic_write_json
from dialog_env.runs import RunFolder, check_parent_folder
from dialog_env.synthetic import draw_pairs
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary, corpus_bleu, tokenize
from dialog_env.torch_utils import resolve_device
from dialog_env.users.attribute import RuleBasedUser
from dialog_env.users.captioner import CaptionerConfig, RelativeCaptioner, load_captioner_checkpoint, save_captioner


@dataclass
class Args:
    catalog: str | None = None
    """HDF5 catalogue (default: the embedded synthetic catalogue, captioned by the rule-based user)"""
    relative_captions: str | None = None
    """relative-caption JSON in the Shoes format (with --catalog): records {ImageName, ReferenceImageName, RelativeCaption}"""
    image_captions: str | None = None
    """single-image caption JSON in the Shoes format (optional, with --relative-captions): records {ImageName, Caption}"""
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


# ---------------------------------------------------------------------------- data
@dataclass
class CaptionPairs:
    """Captioned (target, reference) pairs over one catalogue split.

    Attributes:
        targets, references: ``(M,) int64`` indices into the split.
        captions: ``M`` caption texts (the references of BLEU).
        tokens: ``(M, max_tokens) int64`` token ids, padded with 0.
        kinds: ``(M,) int8``: 0 relative caption, 1 single-image caption with a distant reference.
    """

    targets: np.ndarray
    references: np.ndarray
    captions: list[str]
    tokens: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return int(self.targets.size)

    def subset(self, rows: np.ndarray) -> "CaptionPairs":
        return CaptionPairs(self.targets[rows], self.references[rows], [self.captions[i] for i in rows], self.tokens[rows], self.kinds[rows])


def synthetic_pairs(catalog: Catalog, num_pairs: int, seed: int, user: RuleBasedUser) -> CaptionPairs:
    """Pairs drawn as shoppers compare shoes (93% same category), captioned by the rule-based user.

    One generator per pair, spawned from ``seed``, so the captions do not depend on batching.
    """
    seeds = np.random.SeedSequence([seed, 7])
    pair_rng, caption_seed = (np.random.default_rng(s) for s in seeds.spawn(2))
    targets, references = draw_pairs(catalog, num_pairs, pair_rng)
    captions: list[str] = []
    chunk = 4096
    caption_seeds = caption_seed.integers(2**63, size=num_pairs)
    for start in range(0, num_pairs, chunk):
        part = slice(start, start + chunk)
        rngs = [np.random.default_rng(int(s)) for s in caption_seeds[part]]
        captions.extend(user.describe(catalog, targets[part], references[part], rngs))
    tokens = user.vocabulary.encode_batch(captions, MAX_FEEDBACK_TOKENS)
    return CaptionPairs(targets.astype(np.int64), references.astype(np.int64), captions, tokens, np.zeros(num_pairs, dtype=np.int8))


def distant_references(catalog: Catalog, targets: np.ndarray, per_target: int, rng: np.random.Generator) -> np.ndarray:
    """For each target, ``per_target`` references drawn uniformly from the farther half of the split.

    The paper pairs single-image captions ("black strappy high heels") with visually distant
    reference images, for which an absolute description is a fair relative caption.

    Returns:
        ``(len(targets), per_target) int64`` indices into ``catalog``; never the target itself.
    """
    features, norms = catalog.features, catalog.squared_norms
    out = np.empty((targets.size, per_target), dtype=np.int64)
    for start in range(0, targets.size, 256):
        rows = targets[start : start + 256]
        distances = norms[rows, None] - 2.0 * features[rows] @ features.T + norms[None, :]
        for offset, row_distances in enumerate(distances):
            far = np.flatnonzero(row_distances > np.median(row_distances))
            far = far[far != rows[offset]]
            if far.size == 0:
                far = np.flatnonzero(np.arange(catalog.num_images) != rows[offset])
            out[start + offset] = far[rng.integers(far.size, size=per_target)]
    return out


def real_pairs(args: Args, full: Catalog, catalog: Catalog, seed: int) -> tuple[CaptionPairs, Vocabulary, dict[str, Any]]:
    """Pairs from Shoes-format caption files, with a vocabulary of the words seen ``min_word_count`` times."""
    from dialog_env.data.captions import load_image_captions, load_relative_captions

    split_rows = full.splits[args.split]
    to_split = np.full(full.num_images, -1, dtype=np.int64)
    to_split[split_rows] = np.arange(split_rows.size)
    relative = load_relative_captions(args.relative_captions, full)
    print(relative.summary(), flush=True)
    targets, references = to_split[relative.targets], to_split[relative.references]
    keep = (targets >= 0) & (references >= 0)
    captions = [c for c, k in zip(relative.captions, keep) if k]
    targets, references = targets[keep], references[keep]
    kinds = np.zeros(targets.size, dtype=np.int8)
    counts: dict[str, Any] = {"relative_records": relative.total_records, "relative_missing_images": relative.missing_images,
                              "relative_outside_split": int((~keep).sum()), "relative_pairs": int(keep.sum())}  # fmt: skip
    if args.image_captions:
        single = load_image_captions(args.image_captions, full)
        print(single.summary(), flush=True)
        image_targets = to_split[single.targets]
        inside = image_targets >= 0
        image_targets = image_targets[inside]
        image_captions = [c for c, k in zip(single.captions, inside) if k]
        refs = distant_references(catalog, image_targets, args.distant_references, np.random.default_rng([seed, 11]))
        targets = np.concatenate([targets, np.repeat(image_targets, args.distant_references)])
        references = np.concatenate([references, refs.reshape(-1)])
        captions += [c for c in image_captions for _ in range(args.distant_references)]
        kinds = np.concatenate([kinds, np.ones(refs.size, dtype=np.int8)])
        counts.update(image_records=single.total_records, image_missing_images=single.missing_images,
                      image_outside_split=int((~inside).sum()), image_pairs=int(refs.size))  # fmt: skip
    if targets.size == 0:
        raise ConfigurationError(f"no caption pair has both images in split {args.split!r} of catalogue {full.name!r}")
    vocabulary = Vocabulary.from_texts(captions, min_count=args.min_word_count)
    tokens = vocabulary.encode_batch(captions, MAX_FEEDBACK_TOKENS)
    return CaptionPairs(targets, references, captions, tokens, kinds), vocabulary, counts


def split_by_target(pairs: CaptionPairs, num_images: int, val_fraction: float, rng: np.random.Generator) -> tuple[CaptionPairs, CaptionPairs]:
    """Hold out the pairs of a random ``val_fraction`` of the target images."""
    held_out = np.zeros(num_images, dtype=bool)
    held_out[rng.choice(num_images, size=max(1, round(val_fraction * num_images)), replace=False)] = True
    is_val = held_out[pairs.targets]
    if is_val.all() or not is_val.any():
        raise ConfigurationError(
            f"holding out {val_fraction:.0%} of the target images leaves {int((~is_val).sum())} training and "
            f"{int(is_val.sum())} validation pairs; use more pairs or another --val-fraction"
        )
    return pairs.subset(np.flatnonzero(~is_val)), pairs.subset(np.flatnonzero(is_val))


# ---------------------------------------------------------------------------- training
def batch_tensors(catalog: Catalog, pairs: CaptionPairs, rows: np.ndarray, attends: bool, device: torch.device) -> list[torch.Tensor]:
    """``[targets, references, tokens(, target regions, reference regions)]`` of some pairs, on ``device``."""
    targets, references = pairs.targets[rows], pairs.references[rows]
    tensors = [torch.as_tensor(catalog.features[targets]), torch.as_tensor(catalog.features[references]), torch.as_tensor(pairs.tokens[rows])]
    if attends:
        tensors += [torch.as_tensor(catalog.spatial_features.take(targets)), torch.as_tensor(catalog.spatial_features.take(references))]
    return [t.to(device) for t in tensors]


def mean_token_loss(model: RelativeCaptioner, catalog: Catalog, pairs: CaptionPairs, batch_size: int, device: torch.device) -> float:
    """Teacher-forced cross-entropy per token (words and end tokens) over ``pairs``, in eval mode."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            t, r, tokens, *regions = batch_tensors(catalog, pairs, np.arange(start, min(start + batch_size, len(pairs))), model.config.attends, device)
            loss, scored = model.loss(model(t, r, tokens, *regions), tokens)
            total, count = total + loss.item(), count + int(scored)
    return total / max(count, 1)


def caption_pairs(model: RelativeCaptioner, catalog: Catalog, pairs: CaptionPairs, vocabulary: Vocabulary, device: torch.device) -> list[str]:
    """Greedy captions of ``pairs``."""
    out: list[str] = []
    for start in range(0, len(pairs), 512):
        t, r, _, *regions = batch_tensors(catalog, pairs, np.arange(start, min(start + 512, len(pairs))), model.config.attends, device)
        out.extend(vocabulary.decode(row) for row in model.generate(t, r, *regions))
    return out


def main(argv: Sequence[str] | None = None) -> int:
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
    """Build the pairs, train, select the best epoch, measure BLEU, in the locked ``--output`` folder; returns the metrics written."""
    output = check_parent_folder(args.output, "--output")
    with RunFolder(output, "train_captioner.py") as folder:
        return _train_in(folder, args)


def _train_in(folder: RunFolder, args: Args) -> dict[str, Any]:
    from tqdm import tqdm

    start_time = time.perf_counter()
    output = folder.path
    if (output / "best.pt").exists() and not args.overwrite:
        raise ConfigurationError(f"{str(output / 'best.pt')!r} exists: pass --overwrite to replace it, or another --output")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)

    full = make_catalog(args.catalog)
    catalog = full.select(args.split)
    if args.relative_captions:
        pairs, vocabulary, counts = real_pairs(args, full, catalog, args.seed)
        source = "captions from files"
    else:
        user = RuleBasedUser()
        user.check_catalog(catalog)
        print(f"captioning {args.pairs} synthetic pairs with the rule-based user ...", flush=True)
        pairs, vocabulary = synthetic_pairs(catalog, args.pairs, args.seed, user), user.vocabulary
        counts = {"synthetic_pairs": args.pairs}
        source = "rule-based user"
    train, val = split_by_target(pairs, catalog.num_images, args.val_fraction, np.random.default_rng([args.seed, 3]))
    spatial = catalog.spatial_features
    if args.attention == "on" and spatial is None:
        raise ConfigurationError(f"--attention on, but catalogue {full.name!r} has no spatial features")
    attends = spatial is not None and args.attention != "off"
    config = CaptionerConfig(
        image_dim=catalog.dim, vocab_size=len(vocabulary), spatial_shape=tuple(spatial.shape[1:]) if attends else None,
        embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, dropout=args.dropout,
    )  # fmt: skip
    model = RelativeCaptioner(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    folder.started()
    print(
        f"{source}: {len(train)} training / {len(val)} validation pairs on {catalog.name} ({catalog.num_images} images), "
        f"{len(vocabulary)} token ids, attention {'on ' + str(config.spatial_shape) if attends else 'off'}, device {device}",
        flush=True,
    )

    history: list[dict[str, float]] = []
    best_loss, best_epoch = math.inf, -1
    extra = {"args": dataclasses.asdict(args), "data": counts}
    batch_rng = np.random.default_rng([args.seed, 5])
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = batch_rng.permutation(len(train))
        bar = tqdm(total=len(order), desc=f"epoch {epoch}/{args.epochs}", disable=not args.progress, mininterval=2.0, file=sys.stdout, unit="pair")
        total, count = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            t, r, tokens, *regions = batch_tensors(catalog, train, rows, attends, device)
            loss, scored = model.loss(model(t, r, tokens, *regions), tokens)
            optimizer.zero_grad(set_to_none=True)
            (loss / scored).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total, count = total + loss.item(), count + int(scored)
            bar.update(rows.size)
            bar.set_postfix(loss=f"{total / count:.3f}", refresh=False)
        bar.close()
        val_loss = mean_token_loss(model, catalog, val, 512, device)
        history.append({"epoch": epoch, "train_loss": total / count, "val_loss": val_loss})
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch = val_loss, epoch
            save_captioner(output / "best.pt", model, vocabulary, full, {**extra, "epoch": epoch, "val_loss": val_loss})
        save_captioner(output / "last.pt", model, vocabulary, full, {**extra, "epoch": epoch, "val_loss": val_loss})
        print(f"epoch {epoch}: train loss {total / count:.4f}, validation loss {val_loss:.4f} per token"
              f"{' (best so far: best.pt)' if improved else ''}", flush=True)  # fmt: skip

    best = load_captioner_checkpoint(output / "best.pt")
    model.load_state_dict(best["model"])
    bleu_rows = np.arange(len(val)) if args.bleu_pairs == 0 else np.random.default_rng([args.seed, 9]).permutation(len(val))[: args.bleu_pairs]
    bleu_pairs = val.subset(np.sort(bleu_rows))
    hypotheses = caption_pairs(model, catalog, bleu_pairs, vocabulary, device)
    references = [[caption] for caption in bleu_pairs.captions]
    bleu = corpus_bleu(hypotheses, references)
    samples = [{"generated": h, "reference": r[0]} for h, r in list(zip(hypotheses, references))[:8]]
    metrics = {
        "command": " ".join(["python", "train_captioner.py", *sys.argv[1:]]),
        "args": dataclasses.asdict(args),
        "data": {**counts, "train_pairs": len(train), "val_pairs": len(val), "vocabulary": len(vocabulary),
                 "source": source, "catalog": full.name, "split": args.split},  # fmt: skip
        "config": dataclasses.asdict(config),
        "history": history,
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "bleu": {**bleu, "pairs": len(bleu_pairs), "references_per_pair": 1, "decoding": "greedy", "implementation": "nltk corpus_bleu"},
        "mean_words": {"generated": float(np.mean([len(tokenize(h)) for h in hypotheses])),
                       "reference": float(np.mean([len(tokenize(r[0])) for r in references]))},  # fmt: skip
        "samples": samples,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "dialog_env": dialog_env.__version__},
        "wall_seconds": time.perf_counter() - start_time,
    }
    save_captioner(output / "best.pt", model, vocabulary, full, {**extra, "epoch": best_epoch, "val_loss": best_loss, "bleu": bleu})
    atomic_write_json(output / "metrics.json", metrics)
    print(f"\nbest epoch {best_epoch}: validation loss {best_loss:.4f} per token")
    print(f"BLEU on {len(bleu_pairs)} held-out pairs (greedy, NLTK): " + ", ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.1f}" for n in range(1, 5)))
    for sample in samples[:5]:
        print(f"  generated: {sample['generated']!r:45}  reference: {sample['reference']!r}")
    print(f"wrote {output / 'best.pt'} and {output / 'metrics.json'} ({metrics['wall_seconds']:.0f} s)")
    return metrics


if __name__ == "__main__":
    raise SystemExit(main())
