"""The agent comparison pipeline, in its quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_comparison_writes_tables_json_and_plot_and_reuses_runs(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "compare_agents.py"), "--quick", "--runs-dir",
               str(tmp_path / "runs"),
               "--out", str(tmp_path / "out"), "--resamples", "200"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "agents.json").read_text())
    expected = {"random", "attribute-oracle", "paper-stage1", "paper-stage2", "relative-stage1", "relative-stage2",
                "ppo", "a2c", "dqn", "ppo-query", "sac-query", "td3-query"}  # fmt: skip
    assert set(report["agents"]) == expected
    for name in expected - {"random", "attribute-oracle"}:
        assert report["agents"][name]["seeds"] == [1, 2]  # every learned agent, every seed
    stage2 = report["agents"]["paper-stage2"]["turns"][9]
    assert {"shown_percentile", "success", "ranking_percentile", "recall@10", "recall@50"} <= set(stage2)
    assert stage2["success"]["low"] <= stage2["success"]["mean"] <= stage2["success"]["high"]
    assert [claim["claim"].split(" ")[0] for claim in report["claims"]] == ["Policy", "Both", "Natural-language"]
    assert all(claim["comparisons"] for claim in report["claims"])
    assert "QUICK MODE" in (tmp_path / "out" / "agents.md").read_text()
    assert (tmp_path / "out" / "agents.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("loading the finished run") == 16 and "training (" not in again.stdout
    assert json.loads((tmp_path / "out" / "agents.json").read_text())["agents"] == report["agents"]
