"""Smoke test of ``benchmarks/million_images.py``: its phases on a tiny catalogue, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dialog_env.catalog import Catalog
from dialog_env.synthetic import make_synthetic_shoes

ROOT = Path(__file__).resolve().parents[1]


def test_million_images_pipeline_on_a_tiny_catalogue(tmp_path):
    pytest.importorskip("faiss")
    catalog = tmp_path / "catalog.h5"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "million_images.py"), "--num-train", "1500", "--num-test", "500",
        "--pretrain-iterations", "2", "--improve-iterations", "0", "--episodes", "12", "--batch", "8",
        "--min-time", "0.05", "--catalog", str(catalog), "--runs-dir", str(tmp_path / "runs"),
        "--out", str(tmp_path / "report"),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads((tmp_path / "report" / "million_images.json").read_text())
    phases = report["phases"]
    assert set(phases) == {"write", "env", "train", "evaluate"}
    # The streamed file is the in-memory catalogue.
    written, expected = Catalog.load(catalog), make_synthetic_shoes(num_train=1500, num_test=500)
    assert written.features.tobytes() == expected.features.tobytes()
    assert phases["env"]["images"] == 2000 and phases["env"]["train_images"] == 1500
    assert phases["env"]["vector_cell"]["native"]["step_ms"] > 0
    assert all(0 < report_peak < 8 for report_peak in (phases["train"]["peak_rss_gib"], report["largest_peak_gib"]))
    evaluation = phases["evaluate"]
    assert set(evaluation["seconds"]) == {"exact", "faiss-ivf"}
    assert 0.0 <= evaluation["first_turn_same_share"] <= 1.0 and 0.0 <= evaluation["same_shown_share"] <= 1.0
    # Both timings are recorded; which is larger is not asserted (a timing race on a shared machine).
    for knn in ("exact", "faiss-ivf"):
        assert evaluation["reset_seconds"][knn] > 0 and evaluation["seconds"][knn] > 0
    markdown = (tmp_path / "report" / "million_images.md").read_text()
    assert "2,000 synthetic images" in markdown and "goal (< 8 GiB) met" in markdown

    # --reuse keeps the file (no write phase) and a second run takes a new run folder.
    subprocess.run([*command, "--reuse"], check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    again = json.loads((tmp_path / "report" / "million_images.json").read_text())
    assert "write" not in again["phases"]
    assert len(list((tmp_path / "runs").iterdir())) == 2
