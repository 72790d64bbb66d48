"""The agent comparison pipeline, in its quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agents.registry import SB3_AGENTS

ROOT = Path(__file__).resolve().parents[1]


def test_quick_comparison_writes_tables_json_and_plot_and_reuses_runs(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "compare_agents.py"), "--quick", "--runs-dir",
               str(tmp_path / "runs"),
               "--out", str(tmp_path / "out"), "--resamples", "200"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "agents.json").read_text())
    expected = {"random", "attribute-oracle", "paper-stage1", "paper-stage2", "relative-stage1", "relative-stage2",
                "dialog-retriever", *SB3_AGENTS}  # fmt: skip
    assert set(report["agents"]) == expected
    for name in expected - {"random", "attribute-oracle"}:
        assert report["agents"][name]["seeds"] == [1, 2]  # every learned agent, every seed
    budgets = {name: agent["interaction_budget"] for name, agent in report["agents"].items()}
    assert budgets["random"]["simulator_calls"] == 0
    assert budgets["paper-stage2"]["lookahead_calls"] > 0 == budgets["paper-stage1"]["lookahead_calls"]
    assert budgets["paper-stage2"]["simulator_calls"] > budgets["paper-stage1"]["simulator_calls"] > 0
    learned_without_lookahead = [*SB3_AGENTS, "dialog-retriever"]
    assert all(budgets[name]["simulator_calls"] > 0 == budgets[name]["lookahead_calls"]
               for name in learned_without_lookahead)  # fmt: skip
    stage2 = report["agents"]["paper-stage2"]["turns"][9]
    assert {"shown_percentile", "success", "ranking_percentile", "recall@10", "recall@50"} <= set(stage2)
    assert stage2["success"]["low"] <= stage2["success"]["mean"] <= stage2["success"]["high"]
    first_words = [claim["claim"].split(" ")[0] for claim in report["claims"]]
    assert first_words == ["Policy", "Both", "Natural-language", "Beyond"]
    assert all(claim["comparisons"] for claim in report["claims"])
    assert "QUICK MODE" in (tmp_path / "out" / "agents.md").read_text()
    assert (tmp_path / "out" / "agents.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = 2 * 2 + 2 + 2 * len(SB3_AGENTS)  # the paper's agent with two users, the retriever, every SB3 agent; 2 seeds
    assert again.stdout.count("loading the finished run") == runs and "training (" not in again.stdout
    assert json.loads((tmp_path / "out" / "agents.json").read_text())["agents"] == report["agents"]
