"""dialog_env.cli: one flag per dataclass field, typed by the field's annotation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from dialog_env.cli import dataclass_parser, parse_dataclass


@dataclass
class Args:
    """Settings of a pretend benchmark."""

    checkpoint: Path
    """A required path."""
    steps: int = 20
    """Steps per measurement."""
    rate: float = 0.5
    """A rate, in [0, 1] (not a %)."""
    quick: bool = False
    """A tiny run."""
    progress: bool = True
    """Progress bars."""
    catalog: str | None = None
    """An optional catalogue file."""
    out: Path = Path("results")
    """Folder of the reports."""
    decoding: Literal["greedy", "sample"] = "greedy"
    """Captioner decoding."""
    batches: list[int] = field(default_factory=lambda: [128, 1024])
    """Batch sizes."""
    sizes: tuple[int, ...] = (10, 20)
    """Catalogue sizes."""
    runs: list[Path] = field(default_factory=list)
    """Run folders (repeatable)."""


def parse(argv: list[str]) -> Args:
    return Args(**vars(dataclass_parser(Args, "test").parse_args(argv)))


def test_scalar_flags_keep_their_defaults_and_convert_by_type():
    args = parse(["--checkpoint", "best.pt"])
    assert args == Args(checkpoint=Path("best.pt"))
    assert isinstance(args.checkpoint, Path) and isinstance(args.out, Path)
    args = parse(["--checkpoint", "a.pt", "--steps", "3", "--rate", "0.25", "--catalog", "c.h5", "--out", "o",
                  "--quick", "--no-progress"])  # fmt: skip
    assert (args.steps, args.rate, args.catalog, args.out) == (3, 0.25, "c.h5", Path("o"))
    assert args.quick and not args.progress


def test_a_field_without_default_is_required(capsys):
    with pytest.raises(SystemExit) as error:
        parse([])
    assert error.value.code == 2 and "--checkpoint" in capsys.readouterr().err


def test_literal_fields_accept_only_their_values(capsys):
    assert parse(["--checkpoint", "a", "--decoding", "sample"]).decoding == "sample"
    with pytest.raises(SystemExit):
        parse(["--checkpoint", "a", "--decoding", "beam"])
    assert "invalid choice: 'beam'" in capsys.readouterr().err


def test_list_fields_take_several_values_once_or_repeated_and_replace_the_default():
    args = parse(["--checkpoint", "a", "--batches", "4", "8", "--sizes", "3"])
    assert args.batches == [4, 8] and args.sizes == (3,)
    runs = parse(["--checkpoint", "a", "--runs", "r1", "--runs", "r2", "r3"]).runs
    assert runs == [Path("r1"), Path("r2"), Path("r3")]
    assert parse(["--checkpoint", "a"]).batches == [128, 1024]
    assert parse(["--checkpoint", "a"]).runs == []


def test_the_help_is_the_field_docstring_with_the_default():
    text = dataclass_parser(Args, "test").format_help()
    assert "Batch sizes. (default: [128, 1024])" in text and "--no-progress" in text
    assert "{greedy,sample}" in text and "(not a %)" in text
    assert "A required path.\n" in text  # no "(default: None)"


def test_parse_dataclass_says_which_fields_were_given():
    parser = dataclass_parser(Args, "test")
    args, given = parse_dataclass(Args, parser, ["--checkpoint", "a", "--quick", "--batches", "1", "--batches", "2"])
    assert given == {"checkpoint", "quick", "batches"}
    assert args == Args(checkpoint=Path("a"), quick=True, batches=[1, 2])
    # given, even if equal to the default
    _, given = parse_dataclass(Args, parser, ["--checkpoint", "a", "--steps", "20"])
    assert given == {"checkpoint", "steps"}
