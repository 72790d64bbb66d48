"""Command lines from dataclasses, CleanRL style: each field is a flag, its docstring the help."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap

__all__ = ["field_docs", "dataclass_parser"]


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (read from its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                docs[node.target.id] = str(following.value.value)
    return docs


def dataclass_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An argument parser with one ``--flag-name`` per field of ``cls`` (booleans as ``--x/--no-x``).

    ``cls(**vars(parser.parse_args(argv)))`` gives the parsed dataclass.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = {"bool": bool, "int": int, "float": float}.get(str(field.type), str)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=docs.get(field.name))
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=docs.get(field.name), dest=field.name)
    return parser
