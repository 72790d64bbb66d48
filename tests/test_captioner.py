"""The neural relative captioner: model, decoding, checkpoints, the user simulator and its command."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import dialog_env  # noqa: F401 - registers the environment
from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, UserSimulatorError
from dialog_env.synthetic import make_synthetic_shoes
from dialog_env.text import PAD_ID, UNK_ID, Vocabulary, corpus_bleu
from dialog_env.users import make_user
from dialog_env.users.captioner import (
    MIN_DECODE_ROWS,
    CaptionerConfig,
    CaptionerUser,
    RelativeCaptioner,
    catalog_probe,
    save_captioner,
)
from dialog_env.users.rule import RuleBasedUser

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = RuleBasedUser().vocabulary


def tiny_model(dim: int = 32, spatial: tuple[int, int] | None = None, seed: int = 0) -> RelativeCaptioner:
    torch.manual_seed(seed)
    config = CaptionerConfig(
        image_dim=dim, vocab_size=len(VOCABULARY), spatial_shape=spatial, embed_dim=16, hidden_dim=24, attention_dim=8
    )
    return RelativeCaptioner(config).eval()


def features(batch: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(batch, dim)).astype(np.float32))


# ---------------------------------------------------------------------------- model
def test_forward_shapes_and_loss_counts_every_word_and_the_end_token():
    model = tiny_model()
    captions = torch.as_tensor(VOCABULARY.encode_batch(["is black", "has a higher heel and is red", "is red"], 16))
    logits = model(features(3, 32), features(3, 32, 1), captions)
    assert logits.shape == (3, 17, len(VOCABULARY))
    _, scored = model.loss(logits, captions)
    assert int(scored) == (2 + 1) + (7 + 1) + (2 + 1)


def test_loss_ignores_positions_after_the_end():
    model = tiny_model()
    captions = torch.as_tensor(VOCABULARY.encode_batch(["is black"], 16))
    logits = model(features(1, 32), features(1, 32, 1), captions)
    garbled = logits.clone()
    garbled[:, 3:] = torch.randn_like(garbled[:, 3:]) * 100  # after "is black <end>"
    assert torch.equal(model.loss(logits, captions)[0], model.loss(garbled, captions)[0])
    garbled[:, 2] += 50 * torch.randn_like(garbled[:, 2])  # the end token itself is scored
    assert not torch.equal(model.loss(logits, captions)[0], model.loss(garbled, captions)[0])


@pytest.mark.parametrize("spatial", [None, (5, 6)])
def test_generate_never_empty_never_unknown_and_padded(spatial):
    model = tiny_model(spatial=spatial)
    regions = () if spatial is None else (torch.randn(20, *spatial), torch.randn(20, *spatial))
    rng = np.random.default_rng(0)
    for uniforms in (None, rng.random((20, 16))):
        ids = model.generate(features(20, 32), features(20, 32, 1), *regions, uniforms=uniforms)
        assert ids.shape == (20, 16) and ids.dtype == np.int64
        assert (ids[:, 0] != PAD_ID).all()
        assert not (ids == UNK_ID).any()
        for row in ids:  # padding only at the end
            length = int((row != PAD_ID).sum())
            assert (row[:length] != PAD_ID).all() and (row[length:] == PAD_ID).all()


def test_attention_uses_the_spatial_features():
    model = tiny_model(spatial=(4, 6))
    t, r = features(6, 32), features(6, 32, 1)
    regions = torch.randn(6, 4, 6)
    logits_a = model(t, r, torch.zeros(6, 3, dtype=torch.int64) + 5, regions, regions * 0.5)
    logits_b = model(t, r, torch.zeros(6, 3, dtype=torch.int64) + 5, regions, -regions)
    assert not torch.allclose(logits_a, logits_b)
    with pytest.raises(UserSimulatorError, match="spatial"):
        model(t, r, torch.zeros(6, 3, dtype=torch.int64))


def test_greedy_is_deterministic_and_batch_independent():
    model = tiny_model(seed=3)
    t, r = features(12, 32, 4), features(12, 32, 5)
    together = model.generate(t, r)
    one_by_one = np.concatenate([model.generate(t[i : i + 1], r[i : i + 1]) for i in range(12)])
    assert np.array_equal(together, one_by_one)
    assert np.array_equal(together, model.generate(t, r))


def test_sampling_follows_the_uniforms():
    model = tiny_model(seed=3)
    t, r = features(50, 32, 4), features(50, 32, 5)
    rng = np.random.default_rng(1)
    uniforms = rng.random((50, 16))
    first = model.generate(t, r, uniforms=uniforms)
    assert np.array_equal(first, model.generate(t, r, uniforms=uniforms))
    assert not np.array_equal(first, model.generate(t, r, uniforms=rng.random((50, 16))))
    # A temperature near zero samples the most likely word: greedy decoding.
    assert np.array_equal(model.generate(t, r, uniforms=uniforms, temperature=1e-4), model.generate(t, r))


def _reference_generate(
    model: RelativeCaptioner,
    targets: torch.Tensor,
    references: torch.Tensor,
    *regions: torch.Tensor,
    uniforms: np.ndarray | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """The straightforward decoding (before issue 17): every row stepped at every position."""
    with torch.inference_mode():
        context, state, regions_, keys = model.encode(targets, references, *regions)
        batch = targets.shape[0]
        max_tokens = model.config.max_tokens
        out = np.zeros((batch, max_tokens), dtype=np.int64)
        finished = np.zeros(batch, dtype=bool)
        word_input = model.start_embedding.expand(batch, -1)
        for position in range(max_tokens):
            logits, state = model._step(word_input, state, context, regions_, keys)
            logits = logits.double()
            logits[:, UNK_ID] = -torch.inf
            if position == 0:
                logits[:, PAD_ID] = -torch.inf
            if uniforms is None:
                words = logits.argmax(dim=1).cpu().numpy()
            else:
                probabilities = torch.softmax(logits / temperature, dim=1).cpu().numpy()
                cumulative = np.cumsum(probabilities, axis=1)
                thresholds = uniforms[:, position] * cumulative[:, -1]
                words = (cumulative <= thresholds[:, None]).sum(axis=1)
                words = np.minimum(words, probabilities.shape[1] - 1)
            words = np.where(finished, PAD_ID, words)
            out[:, position] = words
            finished |= words == PAD_ID
            if finished.all():
                break
            word_input = model.word_embedding(torch.as_tensor(words, device=targets.device))
        return out


def ending_model(spatial: tuple[int, int] | None = None) -> RelativeCaptioner:
    """A tiny captioner of 6-word captions whose captions end at many lengths, some at 6 words."""
    torch.manual_seed(7)
    config = CaptionerConfig(image_dim=32, vocab_size=len(VOCABULARY), spatial_shape=spatial, embed_dim=16,
                             hidden_dim=24, attention_dim=8, max_tokens=6)  # fmt: skip
    model = RelativeCaptioner(config).eval()
    with torch.no_grad():  # sharper words, and an end token that is often but not always the likeliest
        model.output.weight.mul_(8.0)
        model.output.bias[PAD_ID] += 3.0
    return model


@pytest.mark.parametrize("spatial", [None, (5, 6)])
@pytest.mark.parametrize("decoding", ["greedy", "sample"])
def test_generate_equals_the_reference_decoding(spatial, decoding):
    """Stepping only the unfinished captions writes the captions of stepping every row (issue 17)."""
    model = ending_model(spatial)
    batch = 64
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch, 32, generator=generator), torch.randn(batch, 32, generator=generator)]
    if spatial is not None:
        inputs += [torch.randn(batch, *spatial, generator=generator) for _ in range(2)]
    rng = np.random.default_rng(0)
    uniforms = rng.random((batch, 6)) if decoding == "sample" else None
    expected = _reference_generate(model, *inputs, uniforms=uniforms, temperature=0.7)
    lengths = (expected != PAD_ID).sum(axis=1)
    assert len(set(lengths.tolist())) >= 3 and lengths.min() < 3 and lengths.max() == 6  # the fixture covers it
    assert np.array_equal(model.generate(*inputs, uniforms=uniforms, temperature=0.7), expected)
    # Batches smaller than, equal to and just above MIN_DECODE_ROWS, of rows in another order.
    for size in (1, 2, 3, MIN_DECODE_ROWS, MIN_DECODE_ROWS + 1, 21):
        rows = rng.permutation(batch)[:size]
        part = [tensor[torch.as_tensor(rows)] for tensor in inputs]
        sub_uniforms = None if uniforms is None else uniforms[rows]
        reference = _reference_generate(model, *part, uniforms=sub_uniforms, temperature=0.7)
        assert np.array_equal(model.generate(*part, uniforms=sub_uniforms, temperature=0.7), reference), size


def test_generate_steps_only_the_unfinished_rows(monkeypatch):
    model = ending_model()
    stepped: list[int] = []
    step = model._step

    def counting_step(word_input, *args):
        stepped.append(word_input.shape[0])
        return step(word_input, *args)

    monkeypatch.setattr(model, "_step", counting_step)
    for batch in (3, 40):
        stepped.clear()
        ids = model.generate(features(batch, 32, 2), features(batch, 32, 3))
        unfinished = [int((ids[:, :position] != PAD_ID).all(axis=1).sum()) for position in range(len(stepped))]
        assert stepped == [max(count, min(batch, MIN_DECODE_ROWS)) for count in unfinished]
        assert batch <= MIN_DECODE_ROWS or min(stepped) < batch  # the batch shrinks


@pytest.mark.parametrize("spatial", [None, (49, 16)])
def test_a_decoder_step_does_not_depend_on_the_other_rows(spatial):
    """What stepping only the unfinished rows rests on, at the default sizes of train_captioner.py.

    Each row's numbers must be the same bits whichever rows (at least MIN_DECODE_ROWS) share its
    batch (the attention scores are taken at the rows' places in the whole batch), on one torch
    thread: with several, MKL splits the rows between threads by batch size and the bits may
    differ (measured with 2 threads), so a caption may then rarely differ from stepping every row.
    If this fails on a new machine, its BLAS takes another path for small batches: raise
    MIN_DECODE_ROWS until it passes.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_rows_independent(spatial)
    finally:
        torch.set_num_threads(previous_threads)


def _check_rows_independent(spatial):
    torch.manual_seed(0)
    config = CaptionerConfig(image_dim=32, vocab_size=len(VOCABULARY), spatial_shape=spatial, embed_dim=128,
                             hidden_dim=256, attention_dim=256)  # fmt: skip
    model = RelativeCaptioner(config).eval()
    batch = 64
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(batch, 32, generator=generator), torch.randn(batch, 32, generator=generator)]
    if spatial is not None:
        inputs += [torch.randn(batch, *spatial, generator=generator) for _ in range(2)]
    with torch.inference_mode():
        context, state, regions, keys = model.encode(*inputs)
        words = model.word_embedding(torch.randint(2, len(VOCABULARY), (batch,), generator=generator))
        logits, (hidden, cell) = model._step(words, state, context, regions, keys)
        for size in (MIN_DECODE_ROWS, MIN_DECODE_ROWS + 1, 17, 63):
            rows = torch.randperm(batch, generator=generator)[:size]
            attention = () if spatial is None else (regions[rows], keys[rows], rows, torch.zeros(keys.shape))
            part_logits, (part_hidden, part_cell) = model._step(
                words[rows], (state[0][rows], state[1][rows]), context[rows], *(attention or (None, None))
            )
            assert torch.equal(part_logits, logits[rows]), size
            assert torch.equal(part_hidden, hidden[rows]) and torch.equal(part_cell, cell[rows]), size


def test_generate_leaves_the_training_mode_as_it_was():
    model = ending_model().train()
    model.generate(features(3, 32), features(3, 32, 1))
    assert model.training and model.dropout.training


def test_config_rejects_bad_sizes():
    with pytest.raises(ConfigurationError, match="hidden_dim"):
        CaptionerConfig(image_dim=4, vocab_size=10, hidden_dim=0)
    with pytest.raises(ConfigurationError, match="spatial_shape"):
        CaptionerConfig(image_dim=4, vocab_size=10, spatial_shape=(0, 3))


# ---------------------------------------------------------------------------- BLEU
def test_corpus_bleu_values():
    assert corpus_bleu(["is black and red"], [["is black and red"]]) == pytest.approx(
        {"bleu1": 100.0, "bleu2": 100.0, "bleu3": 100.0, "bleu4": 100.0}
    )
    scores = corpus_bleu(["is red shoe"], [["is black shoe"]])
    assert scores["bleu1"] == pytest.approx(100 * 2 / 3)  # 2 of 3 words match, no brevity penalty
    assert scores["bleu2"] == pytest.approx(100 * (2 / 3 * 0 / 2) ** 0.5, abs=1e-6)
    # The best of several references counts; a short hypothesis pays the brevity penalty.
    assert corpus_bleu(["is red shoe"], [["is black shoe", "is red shoe"]])["bleu1"] == pytest.approx(100.0)
    assert corpus_bleu(["is"], [["is black shoe"]])["bleu1"] == pytest.approx(100 * np.exp(1 - 3))
    with pytest.raises(ConfigurationError):
        corpus_bleu(["a"], [])


# ---------------------------------------------------------------------------- the user simulator
@pytest.fixture(scope="module")
def catalogue() -> Catalog:
    return make_synthetic_shoes(num_train=120, num_test=60, dim=32, seed=11)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, catalogue) -> Path:
    path = tmp_path_factory.mktemp("captioner") / "best.pt"
    save_captioner(path, tiny_model(seed=5), VOCABULARY, catalogue, {"note": "untrained"})
    return path


def test_env_with_the_captioner_user(checkpoint, catalogue):
    env = gym.make(
        "DialogRetrieval-v0",
        catalog=catalogue,
        split="test",
        user="captioner",
        user_kwargs={"checkpoint": str(checkpoint)},
    )
    check_env(env.unwrapped, skip_render_check=True)
    _, info = env.reset(seed=0)
    assert info["feedback_text"] and "<unk>" not in info["feedback_text"]
    assert env.unwrapped.vocabulary == VOCABULARY


@pytest.mark.parametrize("decoding", ["greedy", "sample"])
def test_vector_env_equals_single_envs_with_the_captioner(checkpoint, catalogue, decoding):
    kwargs = {
        "catalog": catalogue,
        "split": "test",
        "user": "captioner",
        "user_kwargs": {"checkpoint": str(checkpoint), "decoding": decoding},
    }
    vector = gym.make_vec("DialogRetrieval-v0", num_envs=4, vectorization_mode="vector_entry_point", **kwargs)
    singles = [gym.make("DialogRetrieval-v0", **kwargs) for _ in range(4)]
    _, vector_info = vector.reset(seed=3)
    single_infos = [env.reset(seed=3 + i)[1] for i, env in enumerate(singles)]
    actions = np.random.default_rng(0).integers(60, size=(3, 4))
    texts = []
    for step in range(4):
        assert list(vector_info["feedback_text"]) == [info["feedback_text"] for info in single_infos]
        texts.extend(vector_info["feedback_text"])
        if step == 3:
            break
        _, _, _, _, vector_info = vector.step(actions[step])
        single_infos = [env.step(int(a))[4] for env, a in zip(singles, actions[step])]
    assert len(set(texts)) > 1


def test_sampling_user_draws_from_the_dialog_generators(checkpoint, catalogue):
    user = make_user("captioner", checkpoint=str(checkpoint), decoding="sample")
    view = catalogue.select("test")
    targets, shown = np.arange(10), np.arange(10, 20)
    first = user.describe(view, targets, shown, [np.random.default_rng(i) for i in range(10)])
    again = user.describe(view, targets, shown, [np.random.default_rng(i) for i in range(10)])
    other = user.describe(view, targets, shown, [np.random.default_rng(100 + i) for i in range(10)])
    assert first == again and first != other


def test_captioner_user_errors(tmp_path, checkpoint, catalogue):
    with pytest.raises(ConfigurationError, match="checkpoint"):
        make_user("captioner")
    with pytest.raises(UserSimulatorError, match="does not exist"):
        make_user("captioner", checkpoint=str(tmp_path / "missing.pt"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(UserSimulatorError, match="truncated.pt.*could not be read"):
        make_user("captioner", checkpoint=str(truncated))
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else"}, foreign)
    with pytest.raises(UserSimulatorError, match="not a captioner checkpoint"):
        make_user("captioner", checkpoint=str(foreign))
    with pytest.raises(ConfigurationError, match="decoding"):
        make_user("captioner", checkpoint=str(checkpoint), decoding="beam")
    # Another feature dimension, other features for the same ids, no shared ids.
    with pytest.raises(UserSimulatorError, match="32-d features.*16-d"):
        gym.make("DialogRetrieval-v0", catalog=make_synthetic_shoes(num_train=50, num_test=20, dim=16, seed=11),
                 user="captioner", user_kwargs={"checkpoint": str(checkpoint)})  # fmt: skip
    with pytest.raises(UserSimulatorError, match="other features"):
        gym.make("DialogRetrieval-v0", catalog=make_synthetic_shoes(num_train=120, num_test=60, dim=32, seed=12),
                 user="captioner", user_kwargs={"checkpoint": str(checkpoint)})  # fmt: skip
    renamed = Catalog(
        catalogue.features, [f"x{i}" for i in range(catalogue.num_images)], catalogue.splits, name="renamed"
    )
    with pytest.raises(UserSimulatorError, match="shares none"):
        gym.make(
            "DialogRetrieval-v0",
            catalog=renamed,
            split="test",
            user="captioner",
            user_kwargs={"checkpoint": str(checkpoint)},
        )
    env = gym.make("DialogRetrieval-v0", catalog=renamed, split="test", user="captioner",
                   user_kwargs={"checkpoint": str(checkpoint), "strict_catalog": False})  # fmt: skip
    assert env.reset(seed=0)[1]["feedback_text"]


def test_attention_captioner_needs_spatial_features(tmp_path, catalogue):
    path = tmp_path / "attend.pt"
    save_captioner(path, tiny_model(spatial=(4, 6)), VOCABULARY, catalogue)
    with pytest.raises(UserSimulatorError, match="spatial features"):
        gym.make("DialogRetrieval-v0", catalog=catalogue, user="captioner", user_kwargs={"checkpoint": str(path)})


def test_catalog_probe_is_small_and_from_the_catalogue(catalogue):
    probe = catalog_probe(catalogue, size=16)
    assert len(probe["ids"]) == 16 and probe["features"].shape == (16, 32)
    rows = [list(catalogue.ids).index(i) for i in probe["ids"]]
    assert np.array_equal(catalogue.features[rows], probe["features"])


def test_user_from_a_model_in_memory(catalogue):
    user = CaptionerUser(model=tiny_model(), vocabulary=VOCABULARY)
    user.check_catalog(catalogue)  # no probe: nothing to compare
    assert len(user.describe(catalogue, np.array([0, 1]), np.array([2, 3]), [np.random.default_rng(0)] * 2)) == 2
    with pytest.raises(UserSimulatorError, match="vocabulary"):
        CaptionerUser(model=tiny_model(), vocabulary=Vocabulary(["a", "b"]))


def test_describe_writes_the_reference_captions_and_follows_the_catalogue(catalogue):
    """Captions of the user are the reference decoding's, in text; the features cache follows the catalogue."""
    for decoding in ("greedy", "sample"):
        user = CaptionerUser(model=ending_model(), vocabulary=VOCABULARY, decoding=decoding, batch_size=7)
        for view in (catalogue.select("test"), catalogue.select("train"), catalogue.select("test")):
            targets, shown = np.arange(20), np.arange(20, 40)[::-1]
            texts = user.describe(view, targets, shown, [np.random.default_rng(i) for i in range(20)])
            pairs = torch.as_tensor(view.features[targets]), torch.as_tensor(view.features[shown])
            uniforms = np.stack([np.random.default_rng(i).random(6) for i in range(20)])
            ids = np.concatenate([
                _reference_generate(user.model, pairs[0][part], pairs[1][part],
                                    uniforms=uniforms[part] if decoding == "sample" else None)
                for part in (slice(0, 7), slice(7, 14), slice(14, 20))
            ])  # fmt: skip
            assert texts == [VOCABULARY.decode(row) for row in ids]
        copy = pickle.loads(pickle.dumps(user))
        assert copy._catalog_features is None
        rngs = [np.random.default_rng(i) for i in range(20)]
        assert copy.describe(view, targets, shown, rngs) == texts


def test_decode_batch_is_decode_of_every_row():
    ids = np.array([[5, 9, 0, 0], [0, 0, 0, 0], [7, 0, 8, 1], [2, 3, 4, 6]], dtype=np.int64)
    assert VOCABULARY.decode_batch(ids) == [VOCABULARY.decode(row) for row in ids]
    assert VOCABULARY.decode_batch(ids)[1] == "" and "<unk>" in VOCABULARY.decode_batch(ids)[2]
    assert VOCABULARY.decode_batch(np.zeros((0, 16), dtype=np.int64)) == []
    assert pickle.loads(pickle.dumps(VOCABULARY)).decode_batch(ids) == VOCABULARY.decode_batch(ids)


# ---------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One small ``train_captioner.py`` run shared by the command tests."""
    folder = tmp_path_factory.mktemp("trained")
    catalog_path = make_synthetic_shoes(num_train=200, num_test=60, dim=24, seed=3).save(folder / "small.h5")
    output = folder / "captioner"
    command = [sys.executable, "train_captioner.py", "--catalog", str(catalog_path), "--pairs", "1500", "--epochs", "3",
               "--lr", "5e-3", "--batch-size", "32", "--hidden-dim", "48", "--embed-dim", "24", "--bleu-pairs", "100",
               "--no-progress", "--output", str(output)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return {"folder": folder, "catalog": catalog_path, "output": output, "command": command, "result": result}


def test_train_captioner_command_end_to_end(trained):
    result, output = trained["result"], trained["output"]
    assert result.returncode == 0, result.stderr
    assert "BLEU-1" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    losses = [row["val_loss"] for row in metrics["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert metrics["best_val_loss"] == min(losses) and metrics["best_epoch"] == 1 + int(np.argmin(losses))
    assert (
        set(metrics["bleu"]) >= {"bleu1", "bleu2", "bleu3", "bleu4"} and metrics["bleu"]["bleu1"] > 5
    )  # untrained: < 1
    assert metrics["data"]["train_pairs"] + metrics["data"]["val_pairs"] == 1500
    assert not list(output.glob(".*tmp*"))
    # The result is a user simulator of the environment, on the test split too.
    env = gym.make("DialogRetrieval-v0", catalog=str(trained["catalog"]), split="test", user="captioner",
                   user_kwargs={"checkpoint": str(output / "best.pt")})  # fmt: skip
    assert env.reset(seed=0)[1]["feedback_text"]
    # An existing output is not overwritten silently.
    again = subprocess.run(trained["command"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_train_agent_against_the_captioner_and_transfer(trained):
    assert trained["result"].returncode == 0, trained["result"].stderr
    runs = trained["folder"] / "runs"
    user_kwargs = json.dumps({"checkpoint": str(trained["output"] / "best.pt")})
    tiny = ["--catalog", str(trained["catalog"]), "--runs-dir", str(runs), "--pretrain-iterations", "3",
            "--improve-iterations", "1",
            "--batch-size", "8", "--train-turns", "2", "--max-turns", "3", "--eval-episodes", "30", "--no-progress",
                "--no-eval-random"]  # fmt: skip
    for name, user in (
        ("on-rule", ["--user", "rule"]),
        ("on-captioner", ["--user", "captioner", "--user-kwargs", user_kwargs]),
    ):
        result = subprocess.run(
            [sys.executable, "train_agent.py", "--run-name", name, *user, *tiny],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
    config = json.loads((runs / "on-captioner" / "config.json").read_text())
    assert config["args"]["user"] == "captioner" and json.loads(config["args"]["user_kwargs"])["checkpoint"].endswith(
        "best.pt"
    )
    out = trained["folder"] / "transfer"
    result = subprocess.run(
        [sys.executable, "benchmarks/user_transfer.py", "--run", str(runs / "on-rule"), "--run",
         str(runs / "on-captioner"),
         "--captioner", str(trained["output"] / "best.pt"), "--episodes", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "user_transfer.json").read_text())
    assert [gap["agent"] for gap in report["gaps"]] == [
        "on-rule (trained against rule)",
        "on-captioner (trained against captioner)",
    ]
    for label, by_user in report["summaries"].items():
        assert set(by_user) == {"rule", "captioner"}
        # the gap is the paired difference of the two evaluations: the other user minus the training user
        item = next(g for g in report["gaps"] if g["agent"] == label)
        assert {item["user"], item["against"]} == {"rule", "captioner"} and label.endswith(f"{item['against']})")
        gap = item["turns"]["5"]["success"]["mean"]
        other, home = (by_user[item[key]]["turns"][4]["success"]["mean"] for key in ("user", "against"))
        assert gap == pytest.approx(other - home)
    assert "| agent | user minus training user | turn |" in (out / "user_transfer.md").read_text()


def test_captioner_speed_benchmark(trained):
    assert trained["result"].returncode == 0, trained["result"].stderr
    out = trained["folder"] / "speed"
    result = subprocess.run([sys.executable, "benchmarks/captioner_speed.py", "--checkpoint",
                             str(trained["output"] / "best.pt"),
                             "--catalog", str(trained["catalog"]), "--batches", "4", "8", "--steps", "3", "--out",
                                 str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "captioner_speed.json").read_text())["rows"]
    assert [row["batch"] for row in rows] == [4, 8] and all(
        row["rule_ms"] > 0 and row["captioner_ms"] > 0 for row in rows
    )
    assert "| 8 |" in (out / "captioner_speed.md").read_text()


def test_train_agent_rejects_bad_user_kwargs(tmp_path):
    result = subprocess.run([sys.executable, "train_agent.py", "--user-kwargs", "[1, 2]", "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert result.returncode == 2 and "--user-kwargs must be a JSON object" in result.stderr


# ---------------------------------------------------------------------------- attention and real captions
def test_attention_captioner_end_to_end_on_lazy_spatial_features(tmp_path):
    catalog_path = make_synthetic_shoes(num_train=160, num_test=40, dim=16, seed=21, spatial_channels=6).save(
        tmp_path / "spatial.h5"
    )
    output = tmp_path / "attend"
    command = [sys.executable, "train_captioner.py", "--catalog", str(catalog_path), "--pairs", "600", "--epochs", "1",
               "--batch-size", "32", "--hidden-dim", "24", "--embed-dim", "12", "--bleu-pairs", "30", "--no-progress",
               "--output", str(output)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "attention on (7, 6)" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["config"]["spatial_shape"] == [7, 6]
    env = gym.make("DialogRetrieval-v0", catalog=str(catalog_path), split="test", user="captioner",
                   user_kwargs={"checkpoint": str(output / "best.pt")})  # fmt: skip
    assert env.unwrapped.catalog.spatial_features is not None
    check_env(env.unwrapped, skip_render_check=True)
    # --attention off trains the same data without it
    off = subprocess.run(
        [*command[:-1], str(tmp_path / "off"), "--attention", "off"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert off.returncode == 0 and "attention off" in off.stdout
    assert json.loads((tmp_path / "off" / "metrics.json").read_text())["config"]["spatial_shape"] is None


def test_pairs_from_caption_files(tmp_path):
    from train_captioner import Args, real_pairs

    base = make_synthetic_shoes(num_train=40, num_test=10, dim=8, seed=2)
    ids = list(base.ids)
    train_ids = [ids[i] for i in base.splits["train"]]
    test_ids = [ids[i] for i in base.splits["test"]]
    relative = [
        {"ImageName": train_ids[i], "ReferenceImageName": train_ids[i + 1], "RelativeCaption": f"is darker {i % 3}"}
        for i in range(20)
    ]
    relative.append(
        {"ImageName": test_ids[0], "ReferenceImageName": train_ids[0], "RelativeCaption": "outside the split"}
    )
    relative.append(
        {"ImageName": "unknown.jpg", "ReferenceImageName": train_ids[0], "RelativeCaption": "not in the catalogue"}
    )
    single = [{"ImageName": train_ids[i], "Caption": "black high heels"} for i in range(5)]
    (tmp_path / "rel.json").write_text(json.dumps(relative))
    (tmp_path / "single.json").write_text(json.dumps(single))
    args = Args(catalog="unused", relative_captions=str(tmp_path / "rel.json"),
                image_captions=str(tmp_path / "single.json"),
                distant_references=3, min_word_count=2)  # fmt: skip
    view = base.select("train")
    with pytest.warns(UserWarning, match="skipped 1"):
        pairs, vocabulary, counts = real_pairs(args, base, view, seed=0)
    assert (
        counts["relative_missing_images"] == 1
        and counts["relative_outside_split"] == 1
        and counts["relative_pairs"] == 20
    )
    assert counts["image_pairs"] == 15 and len(pairs) == 35 and int(pairs.kinds.sum()) == 15
    assert pairs.captions[20:23] == ["black high heels"] * 3
    # distant references: never the target, always in the farther half of the split
    for target, reference in zip(pairs.targets[20:], pairs.references[20:]):
        distances = ((view.features - view.features[target]) ** 2).sum(axis=1)
        assert reference != target and distances[reference] > np.median(distances)
    # words seen fewer than min_word_count times are unknown; "darker" (20 times) is known
    assert "darker" in vocabulary and "heels" in vocabulary and "outside" not in vocabulary
    assert np.array_equal(pairs.tokens[0][:2], vocabulary.encode("is darker")[:2])


def test_real_shoes_captions_build_pairs(tmp_path, shoes_data_dir):
    from dialog_env.data.captions import read_image_names
    from train_captioner import Args, real_pairs

    train_names = read_image_names(shoes_data_dir / "train_im_names.txt")
    test_names = read_image_names(shoes_data_dir / "eval_im_names.txt")
    names = train_names + test_names
    features = np.random.default_rng(0).normal(size=(len(names), 8)).astype(np.float32)
    full = Catalog(
        features,
        names,
        {"train": np.arange(len(train_names)), "test": np.arange(len(train_names), len(names))},
        name="shoes-random",
    )
    args = Args(catalog="unused", relative_captions=str(shoes_data_dir / "relative_captions_shoes.train.json"),
                image_captions=str(shoes_data_dir / "captions_shoes.train.json"), distant_references=3,
                min_word_count=2)  # fmt: skip
    pairs, vocabulary, counts = real_pairs(args, full, full.select("train"), seed=0)
    assert counts["relative_pairs"] == 8990 and counts["relative_missing_images"] == 0
    assert counts["image_pairs"] == 9000 and len(pairs) == 17990
    assert 300 < len(vocabulary) < 1500
    unknown_share = float((pairs.tokens == 1).sum() / (pairs.tokens > 0).sum())
    assert unknown_share < 0.05
