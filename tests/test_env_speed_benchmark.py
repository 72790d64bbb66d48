"""Smoke tests of the speed benchmarks: ``--quick`` runs end to end and writes its reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_env_speed_quick_writes_markdown_and_json(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "env_speed.py"), "--quick", "--out-dir", str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    report = json.loads((tmp_path / "env_speed.json").read_text())
    assert {(cell["B"], cell["N"]) for cell in report["cells"]} == {(1, 300), (16, 300), (1, 1000), (16, 1000)}
    for cell in report["cells"]:
        floor = cell["floor"]
        assert floor["step_ms"] > 0 and set(floor["engine_ms"]) == {"numpy", "torch"}  # both engines timed
        assert floor["step_ms"] == pytest.approx(min(floor["engine_ms"].values()))
        assert floor["engine"] in floor["engine_ms"]
        assert cell["native"]["status"] == "ok" and cell["native"]["dialog_steps_per_s"] > 0
        assert cell["native"]["ratio_to_floor"] > 0 and cell["native"]["peak_traced_mib"] >= 0
        for method in ("sync", "async", "naive"):
            assert cell[method]["status"] in ("ok", "not run")
    assert report["machine"]["versions"]["numpy"]
    assert report["default_blas_threads_check"]["native"]["status"] == "ok"
    markdown = (tmp_path / "env_speed.md").read_text()
    assert "| 16 |" in markdown and "python benchmarks/env_speed.py --quick" in markdown
    assert "## Products: NumPy against torch" in markdown
    # The native envs' products went through the ranker's "auto" engine, which timed both and chose.
    choices = report["engine_choices"].values()
    assert choices and all(choice["engine"] in ("numpy", "torch") for choice in choices)


def test_ann_recall_quick_writes_recall_table(tmp_path):
    pytest.importorskip("faiss")
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ann_recall.py"), "--quick", "--out-dir", str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    report = json.loads((tmp_path / "ann_recall.json").read_text())
    recalls = {row["backend"]: row["recall"]["10"] for row in report["rows"] if not row["settings"]}
    assert recalls["exact"] == 1.0
    assert recalls["faiss-flat"] >= 0.99
    assert 0.5 <= recalls["faiss-hnsw"] <= 1.0 and 0.3 <= recalls["faiss-ivf"] <= 1.0
