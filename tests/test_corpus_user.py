"""The corpus user: real captions that are true of the pair, the rule-based fallback, its guarantees."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import dialog_env  # noqa: F401 - registers the environment
from dialog_env.domain.parser import claim_holds, parse_caption
from dialog_env.domain.schema import COLORS, attribute_codes
from dialog_env.env import DialogRetrievalEnv
from dialog_env.errors import CaptionNotFoundError, ConfigurationError
from dialog_env.random_streams import stream
from dialog_env.text import UNK_ID
from dialog_env.users import CorpusUser, RuleBasedUser, make_user
from dialog_env.vector import DialogRetrievalVectorEnv

# Made-up captions in the Shoes format: every colour, some other attributes, an "identical", noise.
CAPTIONS = (
    [f"is {color}" for color in COLORS]
    + [f"are {color} with a higher heel" for color in ("black", "brown", "red")]
    + ["has a higher heel", "has a lower heel", "is shinier", "is less shiny", "has laces", "has no laces",
       "are identical", "looks somehow fancier", "is darker", "is lighter", "has a floral print", "is suede"]
)  # fmt: skip


def write_captions(path, texts):
    records = [
        {"ImageName": f"img_{i}.jpg", "ReferenceImageName": f"ref_{i}.jpg", "RelativeCaption": text}
        for i, text in enumerate(texts)
    ]
    path.write_text(json.dumps(records))
    return path


@pytest.fixture()
def caption_file(tmp_path):
    return write_captions(tmp_path / "captions.json", CAPTIONS)


def random_pairs(catalog, size, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(catalog.num_images, size=size), rng.integers(catalog.num_images, size=size)


def generators(size, seed=0):
    return [stream(seed, "realism_dialogs", i) for i in range(size)]


def test_every_real_answer_is_true_of_the_pair(small_shoes, caption_file):
    user = CorpusUser(caption_file)
    targets, shown = random_pairs(small_shoes, 400, seed=1)
    answers = user.explain(small_shoes, targets, shown, generators(400))
    codes = attribute_codes(small_shoes)
    real = [a for a in answers if a.is_real]
    assert len(real) > 200  # colours alone answer most pairs
    for answer, target, image in zip(answers, targets, shown, strict=True):
        if not answer.is_real:
            continue
        assert answer.text == CAPTIONS[answer.record]
        for claim in parse_caption(answer.text).claims:
            assert claim_holds(claim, codes[target], codes[image]), (answer.text, claim)
    assert user.counts == {"real": len(real), "fallback": 400 - len(real)}
    assert user.real_caption_share == pytest.approx(len(real) / 400)
    assert "looks somehow fancier" not in {a.text for a in answers}  # no claims: never said


def test_fallback_is_the_rule_users_caption_from_the_same_draws(small_shoes, tmp_path):
    only = write_captions(tmp_path / "one.json", ["has a floral print"])
    user = CorpusUser(only)
    targets, shown = random_pairs(small_shoes, 200, seed=2)
    corpus = user.describe(small_shoes, targets, shown, generators(200))
    rule = RuleBasedUser().describe(small_shoes, targets, shown, generators(200))
    fallback = [i for i, text in enumerate(corpus) if text != "has a floral print"]
    assert user.counts["fallback"] == len(fallback) > 150
    assert all(corpus[i] == rule[i] for i in fallback)


def test_identical_images_get_an_identical_caption(small_shoes, caption_file):
    user = CorpusUser(caption_file)
    images = np.arange(5)
    assert user.describe(small_shoes, images, images, generators(5)) == ["are identical"] * 5


def test_prefers_the_most_salient_differences(small_shoes, caption_file):
    # Plans that say two differences, colour (the target black) and a higher heel, as the two most
    # salient: the caption about both beats those about either one.
    user = CorpusUser(caption_file, salience_jitter=0.0, count_probabilities=(0.0, 1.0, 0.0))
    targets, shown = random_pairs(small_shoes, 20_000, seed=5)
    plan = user.rule.plan(small_shoes, targets, shown, generators(20_000))
    names = list(small_shoes.attribute_schema)
    color, heel = names.index("color"), names.index("heel_height")
    black = COLORS.index("black")
    chosen = [
        b for b in range(20_000)
        if sorted(plan.order[b][:2]) == sorted((color, heel)) and plan.said[b] == 2
        and plan.target_codes[b][color] == black and plan.target_codes[b][heel] > plan.shown_codes[b][heel]
    ]  # fmt: skip
    assert chosen
    said = user.describe(small_shoes, targets[chosen], shown[chosen], [generators(20_000)[b] for b in chosen])
    assert said == ["are black with a higher heel"] * len(chosen)


def test_same_seeds_same_captions_and_the_vocabulary_covers_them(small_shoes, caption_file):
    targets, shown = random_pairs(small_shoes, 100, seed=3)
    first = CorpusUser(caption_file).describe(small_shoes, targets, shown, generators(100, seed=4))
    second = make_user("corpus", captions=caption_file).describe(small_shoes, targets, shown, generators(100, seed=4))
    assert first == second
    vocabulary = CorpusUser(caption_file).vocabulary
    assert all(UNK_ID not in vocabulary.encode(text) for text in first)


def test_vector_env_equals_single_envs(small_shoes, caption_file):
    kwargs = {"catalog": small_shoes, "split": "test", "max_turns": 6, "user": "corpus",
              "user_kwargs": {"captions": str(caption_file)}}  # fmt: skip
    envs = DialogRetrievalVectorEnv(num_envs=3, **kwargs)
    singles = [DialogRetrievalEnv(**kwargs) for _ in range(3)]
    _, infos = envs.reset(seed=11)
    for i, env in enumerate(singles):
        _, info = env.reset(seed=11 + i)
        assert infos["feedback_text"][i] == info["feedback_text"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.integers(100, size=3)
        obs, _, _, _, infos = envs.step(actions)
        for i, env in enumerate(singles):
            single_obs, *_, info = env.step(int(actions[i]))
            np.testing.assert_array_equal(obs["feedback"][i], single_obs["feedback"])
            assert infos["feedback_text"][i] == info["feedback_text"]


def test_gym_make_with_the_corpus_user(small_shoes, caption_file):
    env = gym.make("DialogRetrieval-v0", catalog=small_shoes, user="corpus", user_kwargs={"captions": caption_file})
    _, info = env.reset(seed=0)
    assert isinstance(info["feedback_text"], str) and info["feedback_text"]


def test_image_halves_split_the_captions(caption_file):
    whole = CorpusUser(caption_file)
    halves = [CorpusUser(caption_file, image_half=h) for h in (0, 1)]
    assert halves[0].usable + halves[1].usable == whole.usable
    assert halves[0].usable > 0 and halves[1].usable > 0
    assert not set(halves[0]._record_of) & set(halves[1]._record_of)


def test_bad_input(tmp_path, caption_file):
    with pytest.raises(CaptionNotFoundError):
        CorpusUser(tmp_path / "missing.json")
    with pytest.raises(ConfigurationError, match="image_half"):
        CorpusUser(caption_file, image_half=2)
    noise = write_captions(tmp_path / "noise.json", ["looks somehow fancier", "is nice"])
    with pytest.raises(ConfigurationError, match="none of its 2 captions"):
        CorpusUser(noise)
    with pytest.raises(ConfigurationError, match="rejected user_kwargs"):
        make_user("corpus")


# ------------------------------------------------------------------ the real captions, where they are
def test_real_captions_answer_most_turns_of_default_dialogs(shoes_data_dir):
    env = DialogRetrievalVectorEnv(
        num_envs=64, user="corpus", user_kwargs={"captions": shoes_data_dir / "relative_captions_shoes.train.json"}
    )
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(rng.integers(env.single_action_space.n, size=64))
    user = env.user
    assert user.counts["real"] + user.counts["fallback"] == 64 * 6
    assert user.real_caption_share >= 0.70  # the goal


def test_corpus_user_benchmark_command(tmp_path, shoes_data_dir):
    from benchmarks.corpus_user import main

    status = main(["--data", str(shoes_data_dir), "--batch", "8", "--steps", "4", "--out", str(tmp_path)])
    assert status in (0, 1)
    report = json.loads((tmp_path / "corpus_user.json").read_text())
    assert report["parser"]["captions"] == 8990 and report["parser"]["with_claims"] >= 0.8
    assert report["corpus"]["turns"] == 8 * 4 and 0 <= report["corpus"]["real_caption_share"] <= 1
    markdown = (tmp_path / "corpus_user.md").read_text()
    assert "turns answered with a real caption" in markdown


def test_corpus_user_benchmark_without_data(tmp_path):
    from benchmarks.corpus_user import main

    assert main(["--data", str(tmp_path), "--out", str(tmp_path)]) == 2


def test_an_agent_reads_another_users_captions_with_its_own_vocabulary(small_shoes, caption_file):
    rule_words = RuleBasedUser().vocabulary
    kwargs = {"catalog": small_shoes, "user": "corpus", "user_kwargs": {"captions": caption_file}}
    env = DialogRetrievalEnv(**kwargs, vocabulary=rule_words.words)  # the reserved tokens are accepted
    assert env.vocabulary == rule_words and env.observation_space["feedback"].high.max() == len(rule_words) - 1
    vector = DialogRetrievalVectorEnv(num_envs=2, **kwargs, vocabulary=rule_words)
    assert vector.vocabulary == rule_words
    # "somehow" is no word of the rule-based user: it reads as <unk>
    ids = rule_words.encode("is black somehow")
    assert ids[0] != UNK_ID and ids[1] != UNK_ID and ids[2] == UNK_ID
    observation, info = env.reset(seed=0)
    np.testing.assert_array_equal(observation["feedback"], rule_words.encode(info["feedback_text"]))
    with pytest.raises(ConfigurationError, match="vocabulary must be"):
        DialogRetrievalEnv(**kwargs, vocabulary="black red")


def test_train_against_the_corpus_user_and_transfer(tmp_path, caption_file):
    """train_agent.py against the corpus user (tiny budget), then user_transfer.py with --captions."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    catalog = tmp_path / "tiny.h5"
    from dialog_env.synthetic import make_synthetic_shoes

    make_synthetic_shoes(num_train=120, num_test=40, dim=16, seed=3).save(catalog)
    runs = tmp_path / "runs"
    tiny = ["--catalog", str(catalog), "--runs-dir", str(runs), "--pretrain-iterations", "3", "--improve-iterations",
            "1", "--batch-size", "8", "--train-turns", "2", "--max-turns", "3", "--eval-episodes", "20",
            "--no-progress", "--no-eval-random", "--torch-threads", "1"]  # fmt: skip
    half = json.dumps({"captions": str(caption_file), "image_half": 0})
    for name, user in (("on-rule", ["--user", "rule"]), ("on-half0", ["--user", "corpus", "--user-kwargs", half])):
        result = subprocess.run(
            [sys.executable, "train_agent.py", "--run-name", name, *user, *tiny],
            capture_output=True, text=True, timeout=300, cwd=root,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    retriever = tiny[:4] + tiny[8:]  # without the paper's --pretrain-iterations and --improve-iterations
    result = subprocess.run(
        [sys.executable, "train_agent.py", "--run-name", "retriever", "--agent", "dialog-retriever",
         "--retriever-iterations", "2", *retriever],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "transfer"
    command = [sys.executable, "benchmarks/user_transfer.py", "--run", str(runs / "on-rule"), str(runs / "on-half0"),
               str(runs / "retriever"), "--captions", str(caption_file), "--episodes", "20",
               "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "user_transfer.json").read_text())
    users = {"rule", "corpus", "corpus-half0", "corpus-half1"}
    assert all(set(by_user) == users for by_user in report["summaries"].values())
    against = {(g["agent"], g["user"], g["against"]) for g in report["gaps"]}
    assert ("on-half0 (trained against corpus-half0)", "corpus-half1", "corpus-half0") in against  # phrasing split
    assert ("on-rule (trained against rule)", "corpus", "rule") in against
    assert ("retriever (trained against rule)", "corpus", "rule") in against  # the dialog retriever as well
    assert len(report["gaps"]) == 3 * 3
    # without --captions the corpus-trained run cannot be evaluated at home: a clear error
    result = subprocess.run(command[:5] + ["--episodes", "20", "--out", str(out)], capture_output=True, text=True,
                            timeout=300, cwd=root)  # fmt: skip
    assert result.returncode == 2 and "--captions" in result.stderr


def test_the_index_finds_exactly_the_true_captions_about_each_set_of_attributes(small_shoes, caption_file):
    user = CorpusUser(caption_file)
    codes = attribute_codes(small_shoes)
    parsed = [parse_caption(text).claims for text in user._texts]
    targets, shown = random_pairs(small_shoes, 300, seed=9)
    for target, image in zip(targets, shown, strict=True):
        for columns in user._members:
            names = {list(small_shoes.attribute_schema)[c] for c in columns}
            expected = tuple(
                i for i, claims in enumerate(parsed)
                if {c.attribute for c in claims} == names
                and all(claim_holds(c, codes[target], codes[image]) for c in claims)
            )  # fmt: skip
            assert user._true_captions(columns, codes[target].tolist(), codes[image].tolist()) == expected
