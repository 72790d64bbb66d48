"""The user-simulator interface and the registry of simulators by name."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.text import Vocabulary

__all__ = ["UserSimulator", "register_user", "make_user", "registered_users"]


class UserSimulator(abc.ABC):
    """A simulated shopper: given the target and the shown image, says how the target differs.

    A simulator is stateless between calls and independent of any one catalogue: every call gets
    the catalogue the indices refer to. Environments call :meth:`check_catalog` once at
    construction, so a simulator that needs, say, attributes fails early with a clear message.

    Randomness: ``rngs`` holds one generator per dialog, and a simulator must draw the random
    numbers of dialog ``b`` from ``rngs[b]`` only (and the same number of them whatever the batch).
    That makes a batch of dialogs behave exactly like the same dialogs played one at a time, which
    is what lets the vector environment match single environments.
    """

    #: Name under which the simulator is registered (``gym.make(..., user=name)``).
    name: ClassVar[str] = ""

    @property
    @abc.abstractmethod
    def vocabulary(self) -> Vocabulary:
        """Every word the simulator can say."""

    def check_catalog(self, catalog: Catalog) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~dialog_env.errors.UserSimulatorError` if ``catalog`` cannot be described."""

    @abc.abstractmethod
    def describe(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[str]:
        """Relative captions: how each target differs from the image shown with it.

        Args:
            catalog: the catalogue the indices refer to.
            targets: ``(B,)`` integer indices of the targets.
            shown: ``(B,)`` integer indices of the shown images.
            rngs: ``B`` generators, one per dialog (see the class docstring).

        Returns:
            ``B`` captions, e.g. ``"is black and has a higher heel"``.
        """


_REGISTRY: dict[str, Callable[..., UserSimulator]] = {}


def register_user(name: str, factory: Callable[..., UserSimulator]) -> None:
    """Make ``factory(**user_kwargs)`` available as ``user=name`` in the environments."""
    _REGISTRY[name] = factory


def registered_users() -> list[str]:
    """Names accepted by :func:`make_user`."""
    return sorted(_REGISTRY)


def make_user(user: str | UserSimulator, **kwargs: Any) -> UserSimulator:
    """A user simulator from a registered name (with keyword arguments) or an instance.

    Raises:
        ConfigurationError: unknown name, or keyword arguments given with an instance.
    """
    if isinstance(user, UserSimulator):
        if kwargs:
            raise ConfigurationError(
                f"user_kwargs {sorted(kwargs)} were given with a ready-made user simulator; pass them "
                f"to its constructor instead"
            )
        return user
    if not isinstance(user, str) or user not in _REGISTRY:
        raise ConfigurationError(f"unknown user simulator {user!r}; registered: {registered_users()}")
    try:
        return _REGISTRY[user](**kwargs)
    except TypeError as error:
        raise ConfigurationError(f"user simulator {user!r} rejected user_kwargs {kwargs}: {error}") from error
