"""Alternative action views of ``DialogRetrieval-v0`` (the core environment stays small).

:class:`QueryAction` lets an agent act with a *query vector* in the catalogue's feature space
instead of an image index: continuous-action algorithms (SAC, TD3, PPO with a Gaussian policy)
can then play the task, and an agent's query doubles as its ranking of the whole catalogue.
:func:`nearest_image` is the one query -> image mapping, shared by the wrapper and by the
evaluation of query agents (:class:`agents.sb3.SB3Agent`), so that training and evaluation show
the same image for the same query.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, InvalidActionError
from dialog_env.ranking import Ranker

__all__ = ["QueryAction", "nearest_image", "query_action_space"]


def nearest_image(ranker: Ranker, queries: np.ndarray) -> np.ndarray:
    """The catalogue image shown for each query: the exact nearest neighbour (squared L2).

    Ties in distance go to the smaller index (:meth:`Ranker.nearest
    <dialog_env.ranking.Ranker.nearest>`), so the mapping is deterministic.

    Args:
        ranker: the ranker of the catalogue split the images are drawn from.
        queries: ``(B, D)`` float query vectors (cast to float32); finite.

    Returns:
        ``(B,) int64`` image indices within the ranker's catalogue.

    Raises:
        ConfigurationError: ``queries`` is not ``(B, D)`` or holds NaN/inf.
    """
    indices, _ = ranker.nearest(queries, k=1)
    return indices[:, 0]


def query_action_space(catalog: Catalog) -> spaces.Box:
    """The query actions over ``catalog``: ``Box(low, high, (D,), float32)``, its per-dimension feature range."""
    features = catalog.features
    return spaces.Box(
        low=features.min(axis=0).astype(np.float32),
        high=features.max(axis=0).astype(np.float32),
        shape=(features.shape[1],),
        dtype=np.float32,
    )


class QueryAction(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Act with a query vector; the environment shows the catalogue image nearest to it.

    ## Action Space

    ``Box(low, high, shape=(D,), dtype=float32)``, where ``low`` and ``high`` are the per-dimension
    minimum and maximum of the split's catalogue features (``env.unwrapped.catalog.features``).
    Any finite ``(D,)`` float32 vector is accepted (queries outside the box are not clipped: the
    nearest image of any point is well defined, and the ranker computes it and the query's rank
    exactly whatever the magnitude, in float64 where float32 would overflow); SB3 clips or squashes
    its actions into the box anyway. NaN, inf and values beyond the float32 range (``|value| >
    3.4e38``) are refused with :class:`~dialog_env.errors.InvalidActionError`.

    ## Dynamics

    ``step(query)`` shows ``nearest_image(env.unwrapped.ranker, query[None])[0]``, the exact
    nearest catalogue image (ties by the smaller index), and forwards it to the wrapped
    environment's ``step``: observations, rewards and episode ends are the environment's, for
    that image.

    ## Info

    ``step`` adds two keys to the environment's info (``reset``'s info is unchanged: no query yet):

    - ``query_index`` (int): the image shown for the query (equal to ``info["shown_index"]``);
    - ``query_rank`` (int): the rank of the target w.r.t. the query vector itself (the number of
      catalogue images strictly closer to the query than the target,
      :meth:`Ranker.query_target_ranks <dialog_env.ranking.Ranker.query_target_ranks>`), i.e. where
      the target stands in the agent's ranking of the catalogue by distance to its query. It is 0
      whenever the target is shown, and can be smaller than ``info["target_rank"]``, the rank
      w.r.t. the shown image.

    The environment keeps the target hidden (``expose_target=False``); to compute ``query_rank``
    the wrapper reads the unwrapped environment's private ``_target`` attribute, the one place
    outside :class:`~dialog_env.env.DialogRetrievalEnv` that does. The value is only reported in
    ``info``, never given to the agent in its observation.

    Example:
        >>> import gymnasium as gym
        >>> from dialog_env import QueryAction
        >>> catalog = {"num_train": 50, "num_test": 10, "dim": 8}
        >>> env = QueryAction(gym.make("dialog_env:DialogRetrieval-v0", catalog=catalog))
        >>> observation, info = env.reset(seed=0)
        >>> observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> info["query_index"] == info["shown_index"]
        True

    The wrapper records its constructor arguments (``gym.utils.RecordConstructorArgs``), so the
    wrapped environment's ``spec`` lists it and ``gym.make(env.spec)`` rebuilds the wrapped
    environment.

    Args:
        env: a ``DialogRetrieval-v0`` environment (possibly wrapped, e.g. by ``gym.make``).

    Raises:
        ConfigurationError: ``env`` does not wrap a :class:`~dialog_env.env.DialogRetrievalEnv`.
    """

    def __init__(self, env: gym.Env) -> None:
        # Recorded before gym.Wrapper.__init__, as Gymnasium's own wrappers do (first call wins).
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        from dialog_env.env import DialogRetrievalEnv

        if not isinstance(env.unwrapped, DialogRetrievalEnv):
            raise ConfigurationError(
                f"QueryAction wraps a DialogRetrievalEnv, got an environment whose unwrapped class is "
                f"{type(env.unwrapped).__name__}"
            )
        self.action_space = query_action_space(env.unwrapped.catalog)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Show the catalogue image nearest to the query ``action`` (a ``(D,)`` float vector).

        Raises:
            InvalidActionError: not a finite float vector of shape ``(D,)``.
        """
        query = self._check_query(action)
        base = self.env.unwrapped
        ranker: Ranker = base.ranker
        target = base._target  # private: see the class docstring
        if target is None:
            index, query_rank = int(nearest_image(ranker, query[None])[0]), None
        else:  # both from one product over the catalogue
            indices, ranks = ranker.nearest_and_query_ranks(query[None], np.array([target]))
            index, query_rank = int(indices[0]), int(ranks[0])
        observation, reward, terminated, truncated, info = self.env.step(index)
        info = dict(info)
        info["query_index"] = index
        info["query_rank"] = query_rank
        return observation, reward, terminated, truncated, info

    def _check_query(self, action: Any) -> np.ndarray:
        dim = self.action_space.shape[0]
        try:
            # Checked in float64 first, so that a value beyond the float32 range is named, not cast to inf.
            query = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise InvalidActionError(
                f"a query action must be a float vector of shape ({dim},), got {action!r}"
            ) from error
        if query.shape != (dim,):
            raise InvalidActionError(f"a query action must have shape ({dim},), got shape {query.shape}")
        magnitude = np.abs(query)
        position = int(np.argmax(magnitude))  # NaN counts as the largest
        if not magnitude[position] <= _FLOAT32_MAX:
            raise InvalidActionError(
                f"a query action must be finite float32 values (|value| <= {_FLOAT32_MAX:.8g}), got "
                f"{query[position]:.7g} at index {position}"
            )
        return query.astype(np.float32)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
