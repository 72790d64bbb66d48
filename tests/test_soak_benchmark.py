"""Smoke tests of the soak benchmark: ``--quick`` writes its reports, and an injected leak is flagged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "soak.py"


def test_soak_quick_writes_markdown_and_json(tmp_path):
    command = [sys.executable, str(SCRIPT), "--quick", "--no-progress", "--out-dir", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads((tmp_path / "soak.json").read_text())

    assert report["args"]["quick"] and report["args"]["steps"] == 20_000 and report["args"]["num_envs"] == 8
    assert report["command"] == f"python benchmarks/soak.py --quick --no-progress --out-dir {tmp_path}"
    assert report["total_steps"] == report["args"]["warmup"] + 20_000 + report["args"]["traced_steps"]
    assert report["dialogs_completed"]["terminated"] > 0 and report["dialogs_completed"]["truncated"] > 0

    untraced = report["untraced"]
    steps = [sample["step"] for sample in untraced["samples"]]
    assert steps == [2_000 * k for k in range(11)]
    assert all(sample["rss_mib"] > 0 and sample["gc_objects"] > 0 for sample in untraced["samples"])
    assert untraced["steps_per_s"] > 0 and untraced["dialogs_completed"] > 20_000 * 8 / 10 / 2
    assert untraced["rss_start_mib"] == untraced["samples"][0]["rss_mib"]
    assert untraced["rss_end_mib"] == untraced["samples"][-1]["rss_mib"]
    assert untraced["rss_peak_sampled_mib"] == max(sample["rss_mib"] for sample in untraced["samples"])
    assert untraced["max_rss_mib"] >= untraced["rss_peak_sampled_mib"] - 1
    assert untraced["rss_growth_mib"] == pytest.approx(untraced["rss_end_mib"] - untraced["rss_start_mib"])

    traced = report["traced"]
    assert [sample["step"] for sample in traced["samples"]][-1] == report["args"]["traced_steps"]
    assert traced["traced_start_mib"] >= 0 and traced["traced_peak_mib"] >= traced["traced_end_mib"]
    assert 0 < len(traced["top_growth"]) <= 5
    assert "token memo (dialog_env.text.Vocabulary)" in traced["caches_end"]

    assert [check["threshold_mib"] for check in report["checks"]] == [32.0, 8.0, 1.0]
    assert report["leak"] == any(check["leak"] for check in report["checks"])
    assert report["machine"]["versions"]["numpy"] and report["machine"]["cpu_count"]

    markdown = (tmp_path / "soak.md").read_text()
    assert markdown.startswith("# Soak test: 20,000 vector-env steps")
    assert f"Command: `{report['command']}`" in markdown
    assert "## Verdict: " in markdown and "| start (after warm-up) |" in markdown and "## Traced phase" in markdown
    assert "Quick mode: too few steps" in markdown
    assert ("LEAK FLAGGED" if report["leak"] else "no leak found") in completed.stdout


LEAKY_SOAK = """
import sys

from benchmarks import soak
from dialog_env import DialogRetrievalVectorEnv

kept, step = [], DialogRetrievalVectorEnv.step

def leaky_step(self, actions):
    kept.append(b"\\x01" * 16384)  # written, so resident
    return step(self, actions)

DialogRetrievalVectorEnv.step = leaky_step
soak.main(sys.argv[1:])
"""


def test_an_injected_leak_is_flagged(tmp_path):
    """A step that keeps 16 KiB alive each call trips all three checks (in a fresh process, whose
    RSS is not blurred by memory that earlier tests freed)."""
    arguments = ["--steps", "4000", "--traced-steps", "600", "--samples", "4", "--warmup", "100", "--no-progress",
                 "--out-dir", str(tmp_path)]  # fmt: skip
    completed = subprocess.run([sys.executable, "-c", LEAKY_SOAK, *arguments], capture_output=True, text=True,
                               timeout=120, cwd=ROOT)  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["leak"] and [check["leak"] for check in report["checks"]] == [True, True, True]
    assert "## Verdict: **leak flagged**" in (tmp_path / "soak.md").read_text()
    assert report["traced"]["top_growth"][0]["where"] == "<string>:10"  # the line of kept.append


def test_soak_rejects_bad_arguments():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--steps", "0", "--hit-rate", "2"],
                               capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert completed.returncode == 2
    assert "--steps must be >= 1, got 0" in completed.stderr
    assert "--hit-rate must be in [0, 1], got 2.0" in completed.stderr
