"""What every benchmark writes: a description of the machine, and its report as JSON (and Markdown).

Every benchmark ends with one :func:`write_report` call, so that reports are written the same way
(atomically, JSON with two-space indents and a final newline) and name the machine they were
measured on with :func:`machine_info`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import dialog_env
from dialog_env.io import atomic_write_json, atomic_write_text, json_default

__all__ = ["machine_info", "write_report"]


def machine_info() -> dict[str, Any]:
    """The machine a benchmark ran on, for its report.

    Returns:
        ``{"cpu": model name, "cpu_count": int, "platform": str, "versions": {"python", "numpy",
        "gymnasium", "dialog_env", "faiss" (None when not installed), "torch" (only when the
        benchmark has imported it): str}, "blas": {"name", "version"} (empty when NumPy does not
        say), "blas_threads_env": OPENBLAS_NUM_THREADS or None}``.
    """
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "dialog_env": dialog_env.__version__,
    }
    try:
        import faiss  # noqa: PLC0415 - optional

        versions["faiss"] = faiss.__version__
    except ImportError:
        versions["faiss"] = None
    torch = sys.modules.get("torch")  # not imported here: most benchmarks do not need it
    if torch is not None:
        versions["torch"] = torch.__version__
    blas = {}
    try:
        blas_config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[call-arg,index]
        blas = {"name": blas_config.get("name"), "version": blas_config.get("version")}
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "blas": blas,
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def _readable(value: Any) -> Any:
    """``json.dumps`` fallback: NumPy values as numbers and lists, anything else (a path...) as ``str``."""
    try:
        return json_default(value)
    except TypeError:
        return str(value)


def write_report(out_dir: Path, name: str, payload: dict, markdown: str | None = None) -> list[Path]:
    """Write a benchmark's report: ``out_dir/name.json`` and, when given, ``out_dir/name.md``.

    Both files are written atomically (:mod:`dialog_env.io`); ``out_dir`` is created if needed.
    The JSON has two-space indents and a final newline; NumPy values are written as numbers and
    lists, and any other value JSON cannot hold (a path, a date...) as its ``str``, so a report
    never fails to be written.

    Args:
        out_dir: the folder of the reports.
        name: the reports' file name without suffix, e.g. ``"env_speed"``.
        payload: the JSON report.
        markdown: the Markdown report, written as given (no newline added).

    Returns:
        The paths written: the JSON file, then the Markdown file if any.
    """
    out_dir = Path(out_dir)
    # One pass through json with the lenient fallback makes every value plain, so that the strict
    # atomic_write_json writes it.
    plain = json.loads(json.dumps(payload, default=_readable))
    paths = [atomic_write_json(out_dir / f"{name}.json", plain)]
    if markdown is not None:
        paths.append(atomic_write_text(out_dir / f"{name}.md", markdown))
    print("wrote " + " and ".join(str(path) for path in paths), flush=True)
    return paths
