"""The agent registry: one list of names, importable without Stable-Baselines3, accepted by train_agent.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import train_agent
from agents import registry
from dialog_env.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["agents.registry", "agents.training", "train_agent"])
def test_importing_the_registry_and_the_training_code_imports_no_stable_baselines3(module):
    code = f"import sys, {module}; print('stable_baselines3' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_name_has_exactly_one_kind():
    names = [name for names in registry.KINDS.values() for name in names]
    assert sorted(names) == sorted(registry.AGENTS) and len(set(names)) == len(names)
    assert registry.SB3_AGENTS == registry.SB3_INDEX_AGENTS + registry.SB3_QUERY_AGENTS
    for kind, names in registry.KINDS.items():
        for name in names:
            info = registry.describe(name)
            assert info.name == name and info.kind == kind and info.summary
            assert info.needs_sb3 == registry.is_sb3_agent(name) == kind.startswith("sb3-")
    assert [name for name in registry.AGENTS if not registry.describe(name).trains] == ["random", "attribute-oracle"]


@pytest.mark.parametrize("name", registry.AGENTS)
def test_train_agent_accepts_every_registered_name(tmp_path, name):
    train_agent.validate_args(train_agent.Args(agent=name, runs_dir=str(tmp_path / "runs")))
    assert train_agent.parse_args(["--agent", name, "--runs-dir", str(tmp_path / "runs")]).agent == name


def test_an_unknown_name_is_refused_with_every_name_listed(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        registry.describe("nope", "--agent")
    for name in registry.AGENTS:
        assert repr(name) in str(error.value)
    with pytest.raises(ConfigurationError, match="--agent must be one of"):
        train_agent.validate_args(train_agent.Args(agent="nope", runs_dir=str(tmp_path / "runs")))
    assert not registry.is_sb3_agent("nope")


def test_the_sb3_module_uses_the_registry_names():
    sb3 = pytest.importorskip("agents.sb3")
    assert sb3.INDEX_AGENTS == registry.SB3_INDEX_AGENTS
    assert sb3.QUERY_AGENTS == registry.SB3_QUERY_AGENTS
    assert sb3.SB3_AGENTS == registry.SB3_AGENTS
