"""Float32 matrix products on the faster of two engines: NumPy's BLAS or torch's.

The ranking engine's float32 products (:mod:`dialog_env.ranking`) are its main cost. Which
library multiplies faster depends on the machine: on one 2-core Intel Xeon, torch's (MKL) took
0.56-0.92x NumPy's (OpenBLAS) time for ``(B, 256) @ (256, N)`` products with ``B >= 16`` and
4-8% more at ``B = 1`` (``benchmarks/env_speed.py`` measures both where it runs). So
:class:`ProductEngine` with ``engine="auto"`` measures: the first products of each shape class
(the batch rounded up to a power of two, the other two sizes exact) alternate between the two
engines, and once each has been timed :data:`TRIALS` times (after one untimed warm-up product)
the one of smaller median time takes every later product of that class in the process.

**The choice never changes a number.** Both engines compute IEEE float32 products with float32
accumulation, in orders of their own; the ranker's error bound holds for any order, and what it
cannot decide it recomputes in float64, so ranks and neighbours are the same whichever engine ran
(``tests/test_ranking.py`` checks both engines against float64 brute force). Torch is used only
while its float32 products are full precision (``torch.get_float32_matmul_precision() ==
"highest"`` and no reduced-precision oneDNN setting); otherwise, or without torch, NumPy.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = ["ENGINES", "TRIALS", "ProductEngine", "engine_choices", "forget_engine_choices", "torch_is_exact"]

#: Values of the ``engine`` argument.
ENGINES = ("auto", "numpy", "torch")
#: Timed products per engine and shape class before ``"auto"`` settles (after one warm-up each).
TRIALS = 3

_lock = threading.Lock()
# Shape class -> {"numpy": [seconds...], "torch": [seconds...]} while measuring; then the choice.
_timings: dict[tuple[int, int, int], dict[str, list[float]]] = {}
_choices: dict[tuple[int, int, int], str] = {}
_torch: Any = None  # the module, imported on first use (None: not yet; False: unavailable)
_read_only_warning_silenced = False


def _torch_module() -> Any:
    global _torch
    if _torch is None:
        try:
            import torch  # noqa: PLC0415 - only where a product may run on it

            _torch = torch
        except ImportError:  # pragma: no cover - torch is a dependency of the project
            _torch = False
    return _torch


def torch_is_exact() -> bool:
    """Whether torch is importable and its float32 CPU products are full IEEE float32 now."""
    torch = _torch_module()
    if not torch or torch.get_float32_matmul_precision() != "highest":
        return False
    mkldnn = getattr(torch.backends, "mkldnn", None)
    # torch >= 2.9: precision settings per backend and operation ("tf32"/"bf16" would break the bound).
    for holder in (torch.backends, mkldnn, getattr(mkldnn, "matmul", None)):
        if getattr(holder, "fp32_precision", "none") not in ("none", "ieee"):
            return False
    return True


def engine_choices() -> dict[str, dict[str, Any]]:
    """What ``"auto"`` chose in this process, per shape class ``"BxDxM"`` (batch class, inner, columns).

    Returns:
        ``{shape: {"engine": "numpy" | "torch" | None (still measuring), "median_ms": {engine: ms}}}``.
    """
    with _lock:
        return {
            f"{b}x{d}x{m}": {
                "engine": _choices.get((b, d, m)),
                "median_ms": {name: 1e3 * float(np.median(times[1:])) for name, times in runs.items() if times[1:]},
            }
            for (b, d, m), runs in _timings.items()
        }


def forget_engine_choices() -> None:
    """Measure again from the next product on (e.g. after changing thread counts)."""
    with _lock:
        _timings.clear()
        _choices.clear()


class ProductEngine:
    """``out = left @ right`` for float32 arrays, on NumPy, on torch, or on the faster (``"auto"``).

    Args:
        engine: ``"auto"`` (measure, see the module docstring), ``"numpy"`` or ``"torch"`` (torch
            falls back to NumPy while its products are not full precision, see
            :func:`torch_is_exact`).

    Raises:
        ConfigurationError: another ``engine``.
    """

    def __init__(self, engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise ConfigurationError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine

    def matmul(self, left: np.ndarray, right: np.ndarray, out: np.ndarray) -> None:
        """``out[...] = left @ right``: ``(B, D) @ (D, M) -> (B, M)``, float32; ``out`` C-contiguous."""
        engine = self.engine
        if engine == "auto":
            engine = self._auto(left, right, out)
            if engine is None:  # measured inside _auto
                return
        if engine == "torch" and torch_is_exact():
            torch = _torch
            global _read_only_warning_silenced
            if not _read_only_warning_silenced and not (left.flags.writeable and right.flags.writeable):
                # Read-only catalogue features: torch warns (once per process, then never again)
                # that it cannot protect them; it only reads them here.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                    torch.from_numpy(left), torch.from_numpy(right)
                _read_only_warning_silenced = True
            torch.matmul(torch.from_numpy(left), torch.from_numpy(right), out=torch.from_numpy(out))
        else:
            np.matmul(left, right, out=out)

    def _auto(self, left: np.ndarray, right: np.ndarray, out: np.ndarray) -> str | None:
        """The chosen engine of this shape class, or ``None`` after running a timed trial itself."""
        batch = left.shape[0]
        key = (1 << max(0, batch - 1).bit_length(), int(left.shape[1]), int(right.shape[1]))
        with _lock:
            chosen = _choices.get(key)
            if chosen is not None:
                return chosen
            if not torch_is_exact():
                return "numpy"  # nothing to choose from now; measure later if torch becomes exact
            runs = _timings.setdefault(key, {"numpy": [], "torch": []})
            engine = "numpy" if len(runs["numpy"]) <= len(runs["torch"]) else "torch"
        started = time.perf_counter()
        ProductEngine(engine).matmul(left, right, out)
        elapsed = time.perf_counter() - started
        with _lock:
            runs = _timings.setdefault(key, {"numpy": [], "torch": []})
            runs[engine].append(elapsed)
            if key not in _choices and min(len(times) for times in runs.values()) > TRIALS:
                # Each engine's first product warms it up (threads, caches, page faults): not counted.
                _choices[key] = min(runs, key=lambda name: float(np.median(runs[name][1:])))
        return None
