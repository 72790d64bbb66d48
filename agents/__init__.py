"""Agents for DialogRetrieval-v0: the protocol and evaluation loop, the paper's dialog manager and
its two training stages, and simple baselines."""

from agents.base import Agent
from agents.baselines import RandomAgent
from agents.evaluation import EpisodeSet, EvaluationResult, evaluate, format_turn_table, summarize
from agents.oracle import AttributeOracleAgent

__all__ = ["Agent", "AttributeOracleAgent", "EpisodeSet", "EvaluationResult", "RandomAgent", "evaluate", "format_turn_table", "summarize"]
