"""Every agent of the project by name, and what kind it is: importing this imports no agent.

The names are those of ``train_agent.py --agent`` and of the benchmarks. The module imports
nothing of the agents themselves (no torch model, no Stable-Baselines3), so that a command can
check a name, list the agents or decide what to import before any optional dependency loads.

| kind | names | trained by |
| --- | --- | --- |
| ``core`` | ``paper``, ``dialog-retriever``, ``random`` | :func:`agents.training.train_paper_agent`, :func:`agents.training.train_retriever_agent` (``random``: nothing) |
| ``evaluation-only`` | ``attribute-oracle`` | nothing (privileged reference) |
| ``sb3-index`` | ``ppo``, ``a2c``, ``dqn``, ``maskable-ppo``, ``recurrent-ppo`` | :func:`agents.training.train_sb3_agent`; action: a catalogue index |
| ``sb3-query`` | ``ppo-query``, ``sac-query``, ``td3-query``, ``recurrent-ppo-query`` | the same; action: a query vector |

``maskable-ppo``, ``recurrent-ppo`` and ``recurrent-ppo-query`` are sb3-contrib's ``MaskablePPO``
(with the environment's no-repeat action mask) and ``RecurrentPPO`` (an LSTM policy); sb3-contrib
comes with the same optional extra as Stable-Baselines3 (``sb3``).
"""  # noqa: E501 - a Markdown table

from __future__ import annotations

from dataclasses import dataclass

from dialog_env.errors import ConfigurationError

__all__ = [
    "AGENTS", "CORE_AGENTS", "EVAL_ONLY_AGENTS", "KINDS", "SB3_AGENTS", "SB3_INDEX_AGENTS", "SB3_QUERY_AGENTS",
    "AgentInfo", "describe", "is_sb3_agent",
]  # fmt: skip

#: Agents without Stable-Baselines3: the paper's agent, the dialog retriever and the random reference.
CORE_AGENTS = ("paper", "dialog-retriever", "random")
#: Agents that are only evaluated, never trained.
EVAL_ONLY_AGENTS = ("attribute-oracle",)
#: Stable-Baselines3 agents whose action is a catalogue index (``Discrete(N)``).
SB3_INDEX_AGENTS = ("ppo", "a2c", "dqn", "maskable-ppo", "recurrent-ppo")
#: Stable-Baselines3 agents whose action is a query vector (``Box(D)``, through ``QueryAction``).
SB3_QUERY_AGENTS = ("ppo-query", "sac-query", "td3-query", "recurrent-ppo-query")
#: Every Stable-Baselines3 agent (they need the optional ``stable-baselines3`` and ``sb3-contrib``).
SB3_AGENTS = SB3_INDEX_AGENTS + SB3_QUERY_AGENTS
#: Every agent, in the order commands list them.
AGENTS = CORE_AGENTS + EVAL_ONLY_AGENTS + SB3_AGENTS
#: kind -> the names of that kind.
KINDS: dict[str, tuple[str, ...]] = {
    "core": CORE_AGENTS,
    "evaluation-only": EVAL_ONLY_AGENTS,
    "sb3-index": SB3_INDEX_AGENTS,
    "sb3-query": SB3_QUERY_AGENTS,
}

_SUMMARIES = {
    "paper": "the paper's dialog manager: supervised pre-training (stage 1), then policy improvement (stage 2)",
    "dialog-retriever": "scores every catalogue image against every turn of the dialog (ours, beyond the paper)",
    "random": "uniformly random unseen images (reference; no training)",
    "attribute-oracle": "reads the catalogue's attributes (privileged reference; no training)",
    "ppo": "Stable-Baselines3 PPO, action: image index",
    "a2c": "Stable-Baselines3 A2C, action: image index",
    "dqn": "Stable-Baselines3 DQN, action: image index",
    "ppo-query": "Stable-Baselines3 PPO, action: query vector",
    "sac-query": "Stable-Baselines3 SAC, action: query vector",
    "td3-query": "Stable-Baselines3 TD3, action: query vector",
    "maskable-ppo": "sb3-contrib MaskablePPO, action: image index, never an image already shown in the dialog",
    "recurrent-ppo": "sb3-contrib RecurrentPPO (LSTM policy), action: image index",
    "recurrent-ppo-query": "sb3-contrib RecurrentPPO (LSTM policy), action: query vector",
}


@dataclass(frozen=True)
class AgentInfo:
    """What the registry knows about one agent.

    Attributes:
        name: the agent's name, e.g. ``"ppo-query"``.
        kind: a key of :data:`KINDS`.
        trains: whether it is trained before it is evaluated.
        needs_sb3: whether it needs the optional extra ``sb3`` (``stable-baselines3``, ``sb3-contrib``).
        summary: one line for listings.
    """

    name: str
    kind: str
    trains: bool
    needs_sb3: bool
    summary: str


def describe(name: str, what: str = "agent") -> AgentInfo:
    """The registry's entry for ``name``.

    Args:
        name: an agent name.
        what: how the error message names the value, e.g. ``"--agent"``.

    Raises:
        ConfigurationError: an unknown name; the message lists every agent by kind.
    """
    for kind, names in KINDS.items():
        if name in names:
            trains = name != "random" and kind != "evaluation-only"
            return AgentInfo(name, kind, trains=trains, needs_sb3=name in SB3_AGENTS, summary=_SUMMARIES[name])
    raise ConfigurationError(
        f"{what} must be one of {list(CORE_AGENTS)}, {list(EVAL_ONLY_AGENTS)} (evaluation only) or a "
        f"Stable-Baselines3 agent {list(SB3_AGENTS)}, got {name!r}"
    )


def is_sb3_agent(name: str) -> bool:
    """Whether ``name`` is a Stable-Baselines3 agent (False for unknown names)."""
    return name in SB3_AGENTS
