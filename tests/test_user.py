from __future__ import annotations

import numpy as np
import pytest

from dialog_env.domain import ATTRIBUTE_NAMES as _ATTRIBUTES
from dialog_env.domain import SHOE_SCHEMA as _SCHEMA
from dialog_env.errors import ConfigurationError, UserSimulatorError
from dialog_env.text import UNK_ID, tokenize
from dialog_env.users import RuleBasedUser, make_user, registered_users

# Words that must appear when a statement names the target's value of a categorical attribute.
VALUE_WORDS = {
    "category": {"clogs": "clog", "boots": "boot", "athletic shoes": "athletic", "stilettos": "stiletto",
                 "high heels": "high", "flats": "flat", "pumps": "pump", "wedding shoes": "dressy",
                 "rain boots": "rain", "sneakers": "sneaker"},
    "material": {"leather": "leather", "suede": "suede", "patent": "patent", "satin": "satin", "canvas": "canvas",
                 "rubber": "rubber", "fur": "fur", "mesh": "mesh"},
    "pattern": {"solid": ("solid", "plain", "no"), "floral": "floral", "plaid": "plaid", "leopard": "leopard",
                "stripes": "strip", "snakeskin": "snakeskin", "polka dots": "polka"},
}  # fmt: skip
COMPARATIVES = {
    "heel_height": ({"higher", "taller", "heel", "heeled"}, {"lower", "shorter", "flat", "no"}),
    "shaft": ({"taller", "higher", "knee", "ankle"}, {"shorter", "lower", "ankle"}),  # "ankle high" is absolute
    "shine": ({"shinier", "shiny"}, {"less", "matte", "duller"}),
    "lightness": ({"lighter"}, {"darker"}),
    "platform": ({"thicker", "higher", "platform"}, {"thinner", "lower", "no"}),
}


def _pairs(catalog, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(catalog.num_images, size=n), rng.integers(catalog.num_images, size=n)


def _rngs(n, seed=0):
    return [np.random.default_rng([seed, i]) for i in range(n)]


def test_same_exactly_when_nothing_differs(small_shoes):
    user = RuleBasedUser()
    targets, shown = _pairs(small_shoes, 600, 0)
    shown[:100] = targets[:100]  # identical images
    codes = np.stack([small_shoes.attributes[a] for a in _ATTRIBUTES], axis=1)
    # Two distinct images with identical attributes, if the catalogue has any.
    feedback = user.explain(small_shoes, targets, shown, _rngs(600))
    for target, image, item in zip(targets, shown, feedback):
        identical = bool((codes[target] == codes[image]).all())
        says_same = item.text in {
            "is the same",
            "is identical",
            "is the same shoe",
            "are the same",
            "are identical",
            "are the same shoes",
        }
        assert says_same == identical, (item.text, target, image)
        assert (len(item.statements) == 0) == identical


def test_statements_are_true_differences(small_shoes):
    user = RuleBasedUser()
    targets, shown = _pairs(small_shoes, 2000, 1)
    checked = 0
    for target, image, item in zip(targets, shown, user.explain(small_shoes, targets, shown, _rngs(2000))):
        words = set(tokenize(item.text))
        for statement in item.statements:
            assert statement.kind == "difference"
            column = _ATTRIBUTES.index(statement.attribute)
            values = _SCHEMA[statement.attribute].values
            t_value = values[small_shoes.attributes[statement.attribute][target]]
            s_value = values[small_shoes.attributes[statement.attribute][image]]
            assert statement.target_value == t_value and statement.shown_value == s_value
            assert t_value != s_value, item
            if statement.attribute == "color":
                assert t_value in words, item
            elif statement.attribute in VALUE_WORDS:
                expected = VALUE_WORDS[statement.attribute][t_value]
                expected = (expected,) if isinstance(expected, str) else expected
                assert any(w.startswith(e) for e in expected for w in words), item
            elif statement.attribute in COMPARATIVES:
                up, down = COMPARATIVES[statement.attribute]
                step = values.index(t_value) - values.index(s_value)
                assert words & (up if step > 0 else down), item
            checked += 1
            assert column >= 0
    assert checked > 2000  # 1-3 statements per caption


def test_says_one_to_three_differences_and_the_most_salient(small_shoes):
    user = RuleBasedUser(salience_jitter=0.0)
    category = small_shoes.attributes["category"]
    targets, shown = _pairs(small_shoes, 500, 2)
    feedback = user.explain(small_shoes, targets, shown, _rngs(500))
    counts = {len(f.statements) for f in feedback if f.statements}
    assert counts == {1, 2, 3}
    for target, image, item in zip(targets, shown, feedback):
        if category[target] != category[image]:
            assert item.statements[0].attribute == "category"  # the most salient difference


def test_vocabulary_covers_every_word_it_says(small_shoes):
    user = RuleBasedUser(vague_rate=0.2, irrelevant_rate=0.3, mistake_rate=0.3)
    targets, shown = _pairs(small_shoes, 3000, 3)
    texts = user.describe(small_shoes, targets, shown, _rngs(3000))
    encoded = user.vocabulary.encode_batch(texts)
    assert not (encoded == UNK_ID).any()
    assert len({t for t in texts}) > 300  # varied phrasing


def test_noise_knobs(small_shoes):
    targets, shown = _pairs(small_shoes, 2000, 4)
    noisy = RuleBasedUser(vague_rate=0.3, irrelevant_rate=0.5, mistake_rate=0.5).explain(
        small_shoes, targets, shown, _rngs(2000)
    )
    kinds = [s.kind for f in noisy for s in f.statements]
    assert 0.2 < kinds.count("vague") / 2000 < 0.4
    assert kinds.count("irrelevant") > 300 and kinds.count("mistaken") > 300
    for _target, _image, item in zip(targets, shown, noisy):
        for statement in item.statements:
            if statement.kind == "irrelevant":
                assert statement.target_value == statement.shown_value == statement.claimed_value
            if statement.kind == "mistaken":
                assert statement.claimed_value != statement.target_value


def test_deterministic_and_batch_independent(small_shoes):
    user = RuleBasedUser(vague_rate=0.1, mistake_rate=0.1)
    targets, shown = _pairs(small_shoes, 50, 5)
    batch = user.describe(small_shoes, targets, shown, _rngs(50))
    again = user.describe(small_shoes, targets, shown, _rngs(50))
    one_by_one = [
        user.describe(small_shoes, targets[i : i + 1], shown[i : i + 1], _rngs(50)[i : i + 1])[0] for i in range(50)
    ]
    assert batch == again == one_by_one


def test_registry_and_validation(tiny_catalog):
    assert "rule" in registered_users()
    assert isinstance(make_user("rule", vague_rate=0.1), RuleBasedUser)
    with pytest.raises(ConfigurationError, match="unknown user simulator 'robot'"):
        make_user("robot")
    with pytest.raises(ConfigurationError, match="rejected user_kwargs"):
        make_user("rule", loudness=3)
    with pytest.raises(ConfigurationError, match="vague_rate must be in"):
        RuleBasedUser(vague_rate=2)
    with pytest.raises(UserSimulatorError, match="lacks"):
        RuleBasedUser().check_catalog(tiny_catalog)


def test_simulator_realism_goals(shoes_data_dir):
    from benchmarks.simulator_realism import load_real_captions, measure

    result = measure(load_real_captions(shoes_data_dir), num_pairs=3000, seed=1)
    assert result["coverage"] >= 0.75
    assert result["precision"] >= 0.90
    assert abs(result["simulated"]["mean_words"] - result["real"]["mean_words"]) < 1.0


def test_relative_attribute_user_says_one_attribute_with_direction_or_value(small_shoes):
    from dialog_env.users import RelativeAttributeUser
    from dialog_env.users.relative_attribute import ORDINAL_ADJECTIVES

    user = RelativeAttributeUser()
    targets, shown = _pairs(small_shoes, 1500, 6)
    shown[:50] = targets[:50]
    codes = np.stack([small_shoes.attributes[a] for a in _ATTRIBUTES], axis=1)
    feedback = user.explain(small_shoes, targets, shown, _rngs(1500))
    texts = [f.text for f in feedback]
    assert not (user.vocabulary.encode_batch(texts) == UNK_ID).any()
    rule = RuleBasedUser()
    rule_feedback = rule.explain(small_shoes, targets, shown, _rngs(1500))  # the same per-dialog draws
    for target, image, item, rule_item in zip(targets, shown, feedback, rule_feedback):
        identical = bool((codes[target] == codes[image]).all())
        assert (len(item.statements) == 0) == identical and (len(item.statements) <= 1)
        if identical:
            continue
        (statement,) = item.statements
        words = tokenize(item.text)
        if statement.attribute in ORDINAL_ADJECTIVES:
            values = _SCHEMA[statement.attribute].values
            up = values.index(statement.target_value) > values.index(statement.shown_value)
            assert words[1] == ("more" if up else "less"), item
            assert " ".join(words[2:]) == ORDINAL_ADJECTIVES[statement.attribute]
        else:
            assert "more" not in words and "less" not in words and len(words) <= 5, item
        # The attribute is the rule-based user's most salient difference, from the same draws.
        assert rule_item.statements[0].attribute == statement.attribute
    relative_words = np.mean([len(t.split()) for t in texts])
    rule_words = np.mean([len(t.split()) for t in rule.describe(small_shoes, targets, shown, _rngs(1500))])
    assert relative_words < rule_words  # it says less


def test_relative_attribute_user_in_the_environment():
    import gymnasium as gym

    env = gym.make("DialogRetrieval-v0", catalog={"num_train": 50, "num_test": 10, "dim": 8}, user="relative-attribute")
    _, info = env.reset(seed=0)
    assert isinstance(env.unwrapped.user, __import__("dialog_env").users.RelativeAttributeUser)
    assert 2 <= len(info["feedback_text"].split()) <= 5
