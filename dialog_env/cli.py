"""Command lines from dataclasses, CleanRL style: each field is a flag, its docstring the help.

A field's type says how its flag reads the command line:

- ``bool``: ``--x`` / ``--no-x``;
- ``int``, ``float``, ``str``, ``Path`` (and ``T | None``): one value, converted by that type;
- ``Literal["a", "b"]``: one of the listed values;
- ``list[T]`` or ``tuple[T, ...]``: one or more values, ``--x 1 2`` or ``--x 1 --x 2`` (given at
  all, the flag replaces the default instead of adding to it);
- any other type: one string.

A field without a default is a required flag.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["field_docs", "dataclass_parser", "parse_dataclass", "split_passthrough"]

T = TypeVar("T")
_BUILTIN_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (read from its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                docs[node.target.id] = str(following.value.value)
    return docs


class _ReplaceThenExtend(argparse.Action):
    """A list-valued flag: the first use replaces the default, later uses add to what was given."""

    def __init__(self, *args: Any, collection: type = list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collection = collection

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        # Anything but a collection this action built (the default, a placeholder) is replaced.
        if current is self.default or not isinstance(current, self.collection):
            current = ()
        setattr(namespace, self.dest, self.collection([*current, *values]))


def _without_none(annotation: Any) -> Any:
    """``T`` for ``T | None`` (or ``Optional[T]``); ``annotation`` itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        remaining = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return annotation


def _value_options(annotation: Any) -> dict[str, Any]:
    """``type`` (and ``choices``) of ``add_argument`` for one value of type ``annotation``."""
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        return {"type": type(choices[0]), "choices": choices}
    if annotation in (int, float, str) or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return {"type": annotation}
    return {"type": str}


def dataclass_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An argument parser with one ``--flag-name`` per field of ``cls`` (types as in the module docstring).

    ``cls(**vars(parser.parse_args(argv)))`` gives the parsed dataclass (or :func:`parse_dataclass`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = field_docs(cls)
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be evaluated here: read the builtin names
        hints = {}
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        help_text = docs.get(field.name)
        # argparse formats help with %: a literal one (a share, "93%") must be doubled.
        options: dict[str, Any] = {"help": None if help_text is None else help_text.replace("%", "%%")}
        if field.default is not dataclasses.MISSING:
            options["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            options["default"] = field.default_factory()
        else:  # required: no default to show in the help
            options.update(required=True, default=argparse.SUPPRESS)
        annotation = _without_none(hints.get(field.name, field.type))
        if isinstance(annotation, str):
            annotation = _BUILTIN_TYPES.get(annotation, str)
        origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif origin in (list, tuple) and arguments and (origin is list or arguments[1:] in ((), (...,))):
            options.update(_value_options(arguments[0]))
            parser.add_argument(
                flag, nargs="+", action=_ReplaceThenExtend, collection=origin, dest=field.name, **options
            )
        else:
            options.update(_value_options(annotation))
            parser.add_argument(flag, dest=field.name, **options)
    return parser


def parse_dataclass(
    cls: type[T], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[T, set[str]]:
    """Parse ``argv`` (default: ``sys.argv[1:]``) with ``parser`` into an instance of ``cls``.

    Args:
        cls: the dataclass.
        parser: its :func:`dataclass_parser`.
        argv: the command-line arguments.

    Returns:
        The instance, and the names of the fields given on the command line (the others keep
        their defaults), for options such as a ``--quick`` that changes only what was not given.
    """
    # argparse fills in a default only where the namespace lacks the attribute: a namespace of
    # placeholders tells which flags were given.
    unset = object()
    namespace = argparse.Namespace(**{field.name: unset for field in dataclasses.fields(cls)})
    parsed = vars(parser.parse_args(argv, namespace=namespace))
    given = {name: value for name, value in parsed.items() if value is not unset}
    return cls(**given), set(given)


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` cut at the first ``--``: a script's own arguments, and those it passes on to another command."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1 :])
