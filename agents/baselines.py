"""Simple reference agents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import Agent
from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream

__all__ = ["RandomAgent"]


class RandomAgent(Agent):
    """Shows uniformly random images of the split, never one already shown in the dialog.

    Args:
        seed: seed of the agent's own generator (independent of the environment's).
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._rng = stream(self.seed, "random_agent")
        self._num_images = 0
        self._shown = np.zeros((0, 0), dtype=np.int64)

    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Start ``num_dialogs`` dialogs; the generator starts afresh, so every evaluation draws the same."""
        self._rng = stream(self.seed, "random_agent")
        self._num_images = catalog.num_images
        self._shown = np.full((num_dialogs, 0), -1, dtype=np.int64)

    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """A uniformly random image per dialog, ``(B,) int64``, not yet shown in it while unseen ones remain."""
        if self._num_images == 0:
            raise ConfigurationError("act() called before reset()")
        new = np.asarray(observations["turn"]).reshape(-1) == 0
        self._shown[new] = -1
        self._shown = np.concatenate([self._shown, np.asarray(infos["shown_index"], dtype=np.int64)[:, None]], axis=1)
        actions = self._rng.integers(self._num_images, size=self._shown.shape[0])
        # Redraw the dialogs whose draw was already shown (while unseen images remain).
        seen_count = np.array([np.unique(row[row >= 0]).size for row in self._shown])
        repeat = (actions[:, None] == self._shown).any(axis=1) & (seen_count < self._num_images)
        while repeat.any():
            actions[repeat] = self._rng.integers(self._num_images, size=int(repeat.sum()))
            repeat = (actions[:, None] == self._shown).any(axis=1) & (seen_count < self._num_images)
        return actions.astype(np.int64)
