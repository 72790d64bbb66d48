"""End-to-end smoke tests of the project's commands, with tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_transcripts_and_rank_table():
    result = subprocess.run(
        [sys.executable, "-m", "dialog_env.demo", "--episodes", "2", "--max-turns", "3", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("--- dialog") == 2 and "turn  0 | shown syn_" in out
    table = out[out.index("per-turn target rank") :].splitlines()
    assert table[1].split() == ["dialog", "|", "0", "1", "2", "3"]
    assert len(table[2].split()) == 6  # dialog number, '|', four ranks or '-'


def test_demo_rejects_bad_arguments():
    result = subprocess.run(
        [sys.executable, "-m", "dialog_env.demo", "--episodes", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "--episodes must be >= 1" in result.stderr


def test_simulator_realism_command(tmp_path, shoes_data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/simulator_realism.py",
            "--pairs",
            "500",
            "--users",
            "rule",
            "relative-attribute",
            "--no-progress",
            "--data",
            str(shoes_data_dir),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    # Exit 1: the rule-based users cover less than 90% of real word occurrences (the goal).
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "simulator_realism.json").read_text())
    assert report["num_pairs"] == 500 and sorted(report["users"]) == ["relative-attribute", "rule"]
    rule = report["users"]["rule"]
    assert 0.75 < rule["coverage"] < 0.90 and rule["precision"] > 0.95 and 0 < rule["word_js"] < 1
    assert "| rule |" in (tmp_path / "simulator_realism.md").read_text()


def test_simulator_realism_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/simulator_realism.py", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr and "--data DIR" in result.stderr
