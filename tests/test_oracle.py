"""The privileged attribute oracle."""

from __future__ import annotations

import numpy as np
import pytest

from agents.evaluation import EpisodeSet, evaluate
from agents.oracle import AttributeOracleAgent, read_caption
from dialog_env.domain import ATTRIBUTE_NAMES as _ATTRIBUTES
from dialog_env.errors import UserSimulatorError
from dialog_env.users import RuleBasedUser

SMALL = {"num_train": 300, "num_test": 100, "dim": 32, "seed": 7}


def test_constraints_read_from_captions_hold_for_the_target(small_shoes):
    user = RuleBasedUser()
    rng = np.random.default_rng(0)
    targets, shown = rng.integers(400, size=500), rng.integers(400, size=500)
    codes = np.stack([small_shoes.attributes[name] for name in _ATTRIBUTES], axis=1)
    captions = user.describe(small_shoes, targets, shown, [np.random.default_rng(i) for i in range(500)])
    informative = 0
    for target, image, caption in zip(targets, shown, captions):
        constraints = read_caption(caption, codes[image])
        if constraints is None:
            assert (codes[target] == codes[image]).all(), caption
            continue
        assert constraints, caption  # every noiseless caption says something readable
        for column, allowed in constraints:
            assert allowed[codes[target, column]], (caption, _ATTRIBUTES[column])
            informative += int(not allowed[codes[image, column]])
    assert informative > 500  # constraints exclude the shown image's values


def test_oracle_finds_the_target_on_a_small_catalogue():
    episodes = EpisodeSet.draw(100, 100, seed=3)
    result = evaluate(AttributeOracleAgent(), episodes, {"catalog": SMALL, "split": "test"}, max_turns=10)
    assert result.success[:, -1].mean() >= 0.9  # the upper reference: it must find most targets
    assert result.ranking_rank is not None and (result.ranking_rank[:, -1] == 0).mean() >= 0.9


def test_oracle_needs_shoe_attributes_and_captions(tiny_catalog):
    with pytest.raises(UserSimulatorError):
        AttributeOracleAgent().reset(tiny_catalog, 1)
