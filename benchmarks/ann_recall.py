"""Recall of the approximate k-NN backends against exact search, on the default catalogue.

Run::

    .venv/bin/python benchmarks/ann_recall.py

writes ``benchmarks/results/ann_recall.md`` and ``ann_recall.json``. The index holds the train
split of the default synthetic catalogue (10,000 x 256); the queries are the first 1,000 images
of the test split (vectors the index has never seen, as an agent's query vectors are). Recall@k
is ``|approximate top-k & exact top-k| / k`` averaged over queries; exact top-k comes from the
``"exact"`` backend (the project's ranker). Needs ``faiss-cpu``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.ann import import_faiss, make_knn_index
from dialog_env.cli import dataclass_parser
from dialog_env.synthetic import default_catalog, make_synthetic_shoes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/ann_recall.py): the report writer is shared
    sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_info, write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

#: (backend, settings) pairs measured; the first of each backend is its default.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("exact", {}),
    ("faiss-flat", {}),
    ("faiss-ivf", {}),
    ("faiss-ivf", {"nprobe": 1}),
    ("faiss-ivf", {"nprobe": 4}),
    ("faiss-ivf", {"nprobe": 64}),
    ("faiss-hnsw", {}),
    ("faiss-hnsw", {"ef_search": 16}),
    ("faiss-hnsw", {"ef_search": 256}),
]
KS = (10, 50, 100)


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    quick: bool = False
    """A 2,000-image catalogue, 100 queries."""
    out_dir: str = str(RESULTS)
    """Folder for ann_recall.md and ann_recall.json."""


def recall(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of ``|approximate_row & exact_row| / k``."""
    k = exact.shape[1]
    return float(np.mean([np.intersect1d(a[a >= 0], e).size / k for a, e in zip(approximate, exact, strict=True)]))


def main(argv: list[str] | None = None) -> None:
    """Measure every configuration of :data:`CONFIGS`; write ``ann_recall.json`` and ``.md``."""
    parser = dataclass_parser(Args, "recall of the FAISS k-NN backends against exact search")
    args = Args(**vars(parser.parse_args(argv)))
    faiss = import_faiss()
    if args.quick:
        catalog = make_synthetic_shoes(num_train=2000, num_test=200, dim=64)
        num_queries = 100
    else:
        catalog = default_catalog()
        num_queries = 1000
    index_features = catalog.select("train").features
    queries = catalog.select("test").features[:num_queries]
    exact = make_knn_index("exact", index_features)
    exact_indices = {k: exact.search(queries, k)[0] for k in KS}
    rows = []
    for name, settings in CONFIGS:
        start = time.perf_counter()
        index = make_knn_index(name, index_features, **settings)
        build_s = time.perf_counter() - start
        search_times = []
        for _ in range(3):
            start = time.perf_counter()
            index.search(queries, 10)
            search_times.append(time.perf_counter() - start)
        # One search per k: HNSW searches with a beam of max(ef_search, k).
        row = {
            "backend": name,
            "settings": settings,
            "build_s": build_s,
            "search_ms_per_query": 1e3 * float(np.median(search_times)) / num_queries,
            "recall": {str(k): recall(index.search(queries, k)[0], exact_indices[k]) for k in KS},
        }
        if name == "faiss-ivf":
            row["effective"] = {"nlist": index.nlist, "nprobe": index.nprobe}
        if name == "faiss-hnsw":
            row["effective"] = {"hnsw_m": index.index.hnsw.nb_neighbors(1), "ef_search": index.ef_search}
        rows.append(row)
        print(f"{name} {settings}: recall@10 {row['recall']['10']:.3f}, build {build_s:.2f} s", flush=True)

    command = "python benchmarks/ann_recall.py" + (" --quick" if args.quick else "")
    report = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "catalogue": catalog.name,
        "index_size": list(index_features.shape),
        "num_queries": num_queries,
        "machine": machine_info(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    lines = [
        "# Recall of the k-NN backends against exact search",
        "",
        f"Command: `{command}` ({report['date']}). Index: the train split of `{catalog.name}` "
        f"({index_features.shape[0]:,} x {index_features.shape[1]} float32); queries: {num_queries:,} "
        f"test-split images (not in the index). faiss {faiss.__version__}, {report['machine']['cpu_count']} cores "
        f"(load average {report['load_average'][0]}). Recall@k = |approximate top-k & exact top-k| / k, "
        "averaged over queries (one search per k; HNSW uses a beam of max(ef_search, k)). "
        "Search time: k = 10, all queries in one batch, per query.",
        "",
        "| backend | settings | recall@10 | recall@50 | recall@100 | build s | search ms/query |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        settings = ", ".join(f"{k}={v}" for k, v in row.get("effective", row["settings"]).items()) or "-"
        if not row["settings"] and row["backend"] != "exact":
            settings += " (default)"
        r = row["recall"]
        lines.append(
            f"| {row['backend']} | {settings} | {r['10']:.3f} | {r['50']:.3f} | {r['100']:.3f} | "
            f"{row['build_s']:.2f} | {row['search_ms_per_query']:.3f} |"
        )
    lines += [
        "",
        "`faiss-flat` is exact up to float32 rounding and the order of equal distances. The "
        "approximate indexes trade recall for speed: raise `nprobe` (IVF) or `ef_search` (HNSW) "
        "for recall. Timings were taken on a shared 2-core machine and are indicative only.",
        "",
    ]
    write_report(Path(args.out_dir), "ann_recall", report, "\n".join(lines))


if __name__ == "__main__":
    main()
