"""Shared fixtures: small synthetic catalogues, so that every test runs in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# The same examples on every run (CI included): a property test that fails, fails every time.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")

from dialog_env.catalog import AttributeSchema, Catalog  # noqa: E402 - after the profile, as Hypothesis asks
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402

SHOES_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "shoes"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks run faster on one torch thread than on several competing for two cores.

    Use it per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _stacked_observations(env, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    observations = []
    observation, _ = env.reset(seed=seed)
    for _ in range(size):
        observations.append(observation)
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, _ = env.reset()
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


@pytest.fixture(scope="session")
def observation_batch():
    """``observation_batch(env, size, seed=0)``: ``size`` observations after random actions, stacked per key."""
    return _stacked_observations


@pytest.fixture(scope="session")
def small_shoes() -> Catalog:
    """A 400-image synthetic Shoes catalogue (300 train / 100 test, D = 32)."""
    return make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7)


@pytest.fixture()
def tiny_catalog() -> Catalog:
    """A hand-made 6-image catalogue with one attribute and two splits."""
    features = np.arange(6 * 3, dtype=np.float32).reshape(6, 3) / 10
    return Catalog(
        features=features,
        ids=[f"img{i}" for i in range(6)],
        splits={"train": np.array([0, 1, 2, 3]), "test": np.array([4, 5])},
        attributes={"color": np.array([0, 1, 0, 1, 0, 1])},
        attribute_schema=[AttributeSchema("color", ("black", "white"))],
        name="tiny",
    )


@pytest.fixture(scope="session")
def shoes_data_dir() -> Path:
    """The real Shoes captions shared with the project, or skip."""
    if not (SHOES_DATA / "relative_captions_shoes.train.json").exists():
        pytest.skip(f"real Shoes captions not found at {SHOES_DATA}")
    return SHOES_DATA
