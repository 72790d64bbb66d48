"""The rule-based user's rich phrasing: more real words, still true, still deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from dialog_env.domain.parser import claim_holds, parse_caption
from dialog_env.domain.phrases import adjective, noun_phrase
from dialog_env.domain.rich_phrases import HEDGES, OUTSIDE_REMARKS, hedged, rich_difference_options
from dialog_env.domain.schema import attribute_codes
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import ConfigurationError
from dialog_env.text import UNK_ID
from dialog_env.users import RuleBasedUser
from dialog_env.vector import DialogRetrievalVectorEnv


def pairs(catalog, size, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(catalog.num_images, size=size), rng.integers(catalog.num_images, size=size)


def generators(size, seed=0):
    return [np.random.default_rng([seed, i]) for i in range(size)]


@pytest.mark.parametrize("phrasing", ["basic", "rich"])
def test_every_claim_the_parser_reads_in_a_caption_is_true(small_shoes, phrasing):
    # The grammar and the parser agree: what the user says, read back, holds for the pair.
    user = RuleBasedUser(phrasing=phrasing)
    targets, shown = pairs(small_shoes, 3000, seed=1)
    codes = attribute_codes(small_shoes)
    claims = 0
    for text, target, image in zip(user.describe(small_shoes, targets, shown, generators(3000)), targets, shown,
                                   strict=True):  # fmt: skip
        for claim in parse_caption(text).claims:
            claims += 1
            assert claim_holds(claim, codes[target], codes[image]), (text, str(claim))
    assert claims > 3000


def test_rich_phrasing_says_more_words_and_its_vocabulary_covers_them(small_shoes):
    basic, rich = RuleBasedUser(), RuleBasedUser(phrasing="rich")
    assert len(rich.vocabulary) >= 400 + 2 and set(basic.vocabulary.words) <= set(rich.vocabulary.words)
    targets, shown = pairs(small_shoes, 2000, seed=2)
    texts = rich.describe(small_shoes, targets, shown, generators(2000))
    assert all(UNK_ID not in rich.vocabulary.encode(text) for text in texts)
    words = {word for text in texts for word in text.replace(",", "").split()}
    assert len(words) > 2 * len(basic.vocabulary)
    remarks = {r.singular for r in OUTSIDE_REMARKS}
    with_remark = sum(any(remark in text for remark in remarks) for text in texts) / len(texts)
    assert 0.2 < with_remark < 0.6  # remark_rate 0.35 and vague_rate 0.06 by default
    assert any(text.split(" ")[1] in {h.split(" ")[0] for h in HEDGES} for text in texts)  # degree words appear


def test_basic_phrasing_is_unchanged_by_the_rich_option(small_shoes):
    targets, shown = pairs(small_shoes, 300, seed=3)
    default = RuleBasedUser().describe(small_shoes, targets, shown, generators(300))
    explicit = RuleBasedUser(phrasing="basic").describe(small_shoes, targets, shown, generators(300))
    rich = RuleBasedUser(phrasing="rich").describe(small_shoes, targets, shown, generators(300))
    assert default == explicit and default != rich


def test_rich_explain_marks_remarks_outside_the_schema(small_shoes):
    user = RuleBasedUser(phrasing="rich", remark_rate=1.0, vague_rate=0.0)
    targets, shown = pairs(small_shoes, 200, seed=4)
    feedback = user.explain(small_shoes, targets, shown, generators(200))
    differing = [f for f in feedback if f.statements]
    assert differing and all(f.statements[-1].kind == "outside" for f in differing)
    # the remark takes the place of the least salient difference: at most 2 differences beside it
    assert all(sum(s.kind == "difference" for s in f.statements) <= 2 for f in differing)


def test_rich_vector_env_equals_single_envs(small_shoes):
    kwargs = {"catalog": small_shoes, "split": "test", "user_kwargs": {"phrasing": "rich"}}
    envs = DialogRetrievalVectorEnv(num_envs=3, **kwargs)
    singles = [DialogRetrievalEnv(**kwargs) for _ in range(3)]
    _, infos = envs.reset(seed=5)
    texts = [env.reset(seed=5 + i)[1]["feedback_text"] for i, env in enumerate(singles)]
    assert list(infos["feedback_text"]) == texts
    actions = np.array([3, 7, 11])
    _, _, _, _, infos = envs.step(actions)
    assert list(infos["feedback_text"]) == [env.step(int(a))[4]["feedback_text"] for env, a in zip(singles, actions)]


def test_hedges_and_options():
    assert hedged(adjective("darker"), "slightly").singular == "slightly darker"
    assert hedged(noun_phrase("a higher heel"), "a bit").singular == "a bit higher heel"
    assert hedged(noun_phrase("a higher heel"), "slightly").singular == "a slightly higher heel"
    options, cumulative, hedgeable = rich_difference_options("heel_height", "high", "low", "medium")
    assert len(options) == len(cumulative) == len(hedgeable)
    assert hedgeable[[o.singular for o in options].index("a higher heel")]
    assert not hedgeable[[o.singular for o in options].index("a much higher heel")]


def test_bad_phrasing_options():
    with pytest.raises(ConfigurationError, match="phrasing must be one of"):
        RuleBasedUser(phrasing="fancy")
    with pytest.raises(ConfigurationError, match="need phrasing='rich'"):
        RuleBasedUser(remark_rate=0.2)
    with pytest.raises(ConfigurationError, match="hedge_rate must be in"):
        RuleBasedUser(phrasing="rich", hedge_rate=2.0)


def test_rich_phrasing_meets_the_realism_goals(shoes_data_dir):
    from benchmarks.simulator_realism import Args, compare, load_real_captions, user_specs

    real = load_real_captions(shoes_data_dir)
    result = compare(real, user_specs(Args(data=shoes_data_dir, users=["rule-rich"])), num_pairs=3000)
    rich = result["users"]["rule-rich"]
    assert rich["coverage"] >= 0.90 and rich["precision"] >= 0.95
