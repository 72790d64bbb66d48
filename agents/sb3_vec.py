"""Stable-Baselines3 at native speed: an SB3 ``VecEnv`` over :class:`~dialog_env.vector.DialogRetrievalVectorEnv`.

SB3's ``DummyVecEnv`` steps ``n`` single environments one after the other in Python, so every
step pays ``n`` rankings and ``n`` user calls. :class:`NativeDialogVecEnv` gives SB3 the same
interface over the native vector environment, which ranks all dialogs with one matrix product and
asks the user simulator for all captions in one call.

Per dialog it behaves exactly like ``DummyVecEnv`` over ``Monitor``-wrapped single environments
(and ``QueryAction`` around them for query actions) seeded the same way
(``tests/test_sb3_vec.py``): the same observations, rewards, dones and infos, including SB3's
autoreset conventions (``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]``,
the reset info in ``reset_infos``) and ``Monitor``'s ``infos[i]["episode"]`` (``r``, ``l``, ``t``;
only the wall time ``t`` differs).

Actions:

- ``action="index"``: ``(n,)`` image indices (``Discrete(N)`` per dialog), for PPO/A2C/DQN;
- ``action="query"``: ``(n, D)`` float query vectors (``QueryAction``'s ``Box``); each dialog is
  shown the catalogue image nearest its query (one batched exact nearest-neighbour search) and its
  info gains ``query_index`` and ``query_rank`` (the target's rank w.r.t. the query itself), as
  with :class:`~dialog_env.wrappers.QueryAction`.

Action masks (index actions only): :meth:`NativeDialogVecEnv.action_masks` is the ``(n, N) bool``
no-repeat mask of the native environment (True = an image not yet shown in that dialog, see
:meth:`DialogRetrievalVectorEnv.action_masks <dialog_env.vector.DialogRetrievalVectorEnv.action_masks>`),
and ``env_method("action_masks")`` returns its rows, one ``(N,)`` mask per dialog, as
``DummyVecEnv`` returns each single environment's: what sb3-contrib's ``get_action_masks(env)``
and ``MaskablePPO`` read. Because SB3 autoresets in the step that ends a dialog, the mask after a
step always belongs to the observation that step returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from dialog_env.errors import ConfigurationError, InvalidActionError
from dialog_env.vector import DialogRetrievalVectorEnv
from dialog_env.wrappers import query_action_space

__all__ = ["NativeDialogVecEnv", "ACTION_KINDS"]

#: The action kinds of :class:`NativeDialogVecEnv`.
ACTION_KINDS = ("index", "query")


class NativeDialogVecEnv(VecEnv):
    """An SB3 ``VecEnv`` of ``n_envs`` dialogs stepped by one native vector environment.

    Args:
        n_envs: dialogs stepped together.
        action: ``"index"`` (image indices) or ``"query"`` (query vectors, see the module docstring).
        **env_kwargs: arguments of :class:`~dialog_env.vector.DialogRetrievalVectorEnv`
            (``catalog``, ``split``, ``user``, ``max_turns``, ``reward_mode``...); not
            ``num_envs`` or ``autoreset_mode`` (this class sets them).

    Raises:
        ConfigurationError: an unknown action kind, ``n_envs < 1``, a reserved keyword, or any
            argument the vector environment refuses.
    """

    def __init__(self, n_envs: int, action: str = "index", **env_kwargs: Any) -> None:
        if action not in ACTION_KINDS:
            raise ConfigurationError(f"action must be one of {list(ACTION_KINDS)}, got {action!r}")
        for reserved in ("num_envs", "autoreset_mode"):
            if reserved in env_kwargs:
                raise ConfigurationError(f"NativeDialogVecEnv sets {reserved!r} itself; remove it from env_kwargs")
        # SAME_STEP is SB3's convention: the step that ends a dialog returns the new dialog's start.
        self.envs = DialogRetrievalVectorEnv(num_envs=n_envs, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs)
        self.action_kind = action
        self.render_mode = self.envs.render_mode
        single_action_space = (
            self.envs.single_action_space if action == "index" else query_action_space(self.envs.catalog)
        )
        super().__init__(self.envs.num_envs, self.envs.single_observation_space, single_action_space)
        self._actions: np.ndarray | None = None
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._monitor_start = time.time()  # Monitor's "t" counts from here

    # ------------------------------------------------------------------ the VecEnv API
    def reset(self) -> VecEnvObs:
        """Start every dialog (with the seeds of :meth:`seed`, if given since the last reset)."""
        if any(self._options):
            raise ConfigurationError(
                "per-dialog reset options (set_options) are not supported by NativeDialogVecEnv; "
                "reset the native environment with options={'target': ..., 'initial': ...} instead"
            )
        observations, infos = self.envs.reset(seed=list(self._seeds))
        self.reset_infos = self._split_infos(infos)
        self._reset_seeds()
        self._reset_options()
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        return _copy_observations(observations)

    def step_async(self, actions: np.ndarray) -> None:
        """Remember ``actions`` for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every dialog; autoreset the ended ones (SB3's conventions, see the module docstring)."""
        if self._actions is None:
            raise ConfigurationError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        query_infos = None
        if self.action_kind == "query":
            queries = self._check_queries(actions)
            # The image shown and the target's rank w.r.t. the query itself (what QueryAction computes
            # with nearest_image and query_target_ranks), from one product over the catalogue.
            indices, query_ranks = self.envs.ranker.nearest_and_query_ranks(queries, self.envs._targets)
            query_infos = (indices, query_ranks)
            actions = indices
        observations, rewards, terminations, truncations, infos = self.envs.step(np.asarray(actions))
        dones = terminations | truncations
        step_infos = self._split_infos(infos)
        if dones.any():  # an ended dialog's step info is its last one; the new dialog's goes to reset_infos
            final_infos = self._split_infos(infos["final_info"])
            for i in np.flatnonzero(dones):
                self.reset_infos[i] = step_infos[i]
                step_infos[i] = final_infos[i]
        self._episode_returns += rewards
        self._episode_lengths += 1
        now = time.time()
        for i in range(self.num_envs):
            info = step_infos[i]
            if query_infos is not None:
                info["query_index"] = int(query_infos[0][i])
                info["query_rank"] = int(query_infos[1][i])
            info["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
            if dones[i]:
                info["episode"] = {
                    "r": round(float(self._episode_returns[i]), 6),
                    "l": int(self._episode_lengths[i]),
                    "t": round(now - self._monitor_start, 6),
                }
                info["terminal_observation"] = infos["final_obs"][i]
                self._episode_returns[i] = 0.0
                self._episode_lengths[i] = 0
        return _copy_observations(observations), rewards.astype(np.float32), dones, step_infos

    def close(self) -> None:
        """Close the vector environment."""
        self.envs.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the (shared) vector environment, once per selected dialog."""
        value = getattr(self.envs, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Refused: the dialogs share one environment, so an attribute cannot differ between them."""
        raise ConfigurationError(
            f"set_attr({attr_name!r}) is not supported: the {self.num_envs} dialogs share one native environment"
        )

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the vector environment once, and return its result for each selected dialog.

        ``"action_masks"`` is the exception: each selected dialog gets its own ``(N,) bool`` row of
        :meth:`action_masks`, as ``DummyVecEnv`` returns each single environment's mask.
        """
        if method_name == "action_masks":
            masks = self.action_masks(*method_args, **method_kwargs)
            return [masks[i] for i in self._get_indices(indices)]
        result = getattr(self.envs, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def has_attr(self, attr_name: str) -> bool:
        """Whether the vector environment has ``attr_name``; ``"action_masks"`` only with index actions."""
        if attr_name == "action_masks":  # sb3-contrib's is_masking_supported asks this
            return self.action_kind == "index"
        return super().has_attr(attr_name)

    def action_masks(self) -> np.ndarray:
        """The no-repeat masks of every dialog (index actions only; see the module docstring).

        Returns:
            ``(n_envs, N) bool``: row ``i`` True for the images not yet shown in dialog ``i``
            (after a step that ended it: in the new dialog it was reset to); a fresh array.

        Raises:
            ConfigurationError: with ``action="query"``, whose actions are query vectors.
        """
        if self.action_kind != "index":
            raise ConfigurationError(
                f"action masks cover image indices (Discrete(N)), but this NativeDialogVecEnv has "
                f"action={self.action_kind!r} (Box(D) query vectors, which no mask covers); "
                f"use action='index' with MaskablePPO or get_action_masks()"
            )
        return self.envs.action_masks()

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """No dialog is a wrapped single environment (``Monitor``'s statistics are built in)."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each dialog's ``rgb_array`` frame (with ``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return [None for _ in range(self.num_envs)]
        return list(self.envs.render())

    # ------------------------------------------------------------------ helpers
    def _check_queries(self, actions: Any) -> np.ndarray:
        dim = self.envs.catalog.dim
        queries = np.asarray(actions, dtype=np.float64)
        if queries.shape != (self.num_envs, dim):
            raise InvalidActionError(
                f"query actions must have shape ({self.num_envs}, {dim}), got shape {queries.shape}"
            )
        if not np.isfinite(queries).all() or np.abs(queries).max() > np.finfo(np.float32).max:
            raise InvalidActionError("query actions must be finite float32 values")
        return queries.astype(np.float32)

    def _split_infos(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        """Gymnasium's vector info (arrays and ``_key`` masks) as SB3's list of per-dialog dicts."""
        rows: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, values in infos.items():
            if key.startswith("_") or key in ("final_obs", "final_info"):
                continue
            mask = infos.get(f"_{key}")
            for i in range(self.num_envs):
                if mask is None or mask[i]:
                    rows[i][key] = _plain(values[i])
        return rows


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value a single environment's info holds."""
    return value.item() if isinstance(value, np.generic) else value


def _copy_observations(observations: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.array(value) for key, value in observations.items()}
