"""Agents for DialogRetrieval-v0.

The agent protocol (:mod:`agents.base`) and the one evaluation loop (:mod:`agents.evaluation`);
the paper's dialog manager and its two training stages (:mod:`agents.dialog_manager`,
:mod:`agents.policy_improvement`), trained with resume by :mod:`agents.training`; simple and
privileged baselines; the Stable-Baselines3 baselines (:mod:`agents.sb3`, optional). Every agent
name is listed in :mod:`agents.registry`, which imports no agent.
"""

from agents.base import Agent
from agents.baselines import RandomAgent
from agents.evaluation import EpisodeSet, EvaluationResult, evaluate, format_turn_table, summarize
from agents.oracle import AttributeOracleAgent

__all__ = [
    "Agent",
    "AttributeOracleAgent",
    "EpisodeSet",
    "EvaluationResult",
    "RandomAgent",
    "evaluate",
    "format_turn_table",
    "summarize",
]
