"""The agent protocol, the evaluation loop, the paper's agent and its two training stages."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents.dialog_manager as dialog_manager_module
import dialog_env
from agents.baselines import RandomAgent
from agents.dialog_manager import (
    DialogManager,
    DialogManagerAgent,
    DialogManagerConfig,
    nearest_unseen,
    pretrain,
    top_unseen,
)
from agents.evaluation import EpisodeSet, evaluate, format_turn_table, summarize
from agents.policy_improvement import improved_actions, rollout_values
from dialog_env.ann import KnnIndex
from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 200, "num_test": 80, "dim": 16, "seed": 3}


@pytest.fixture(scope="module")
def small_catalog_file(tmp_path_factory):
    return str(dialog_env.make_synthetic_shoes(**SMALL).save(tmp_path_factory.mktemp("catalog") / "small.h5"))


def _train_envs(batch=16, turns=4, user="rule"):
    return gym.make_vec("DialogRetrieval-v0", num_envs=batch, catalog=SMALL, max_turns=turns, expose_target=True,
                        user=user,
                        vectorization_mode="vector_entry_point").unwrapped  # fmt: skip


def _model(envs, seed=0):
    torch.manual_seed(seed)
    return DialogManager(
        DialogManagerConfig(envs.catalog.dim, len(envs.vocabulary), embed_dim=32, word_dim=32, hidden_dim=32)
    )


# ---------------------------------------------------------------------------- protocol and evaluation
def test_episode_set_is_fixed_and_valid():
    a = EpisodeSet.draw(50, 200, seed=4)
    b = EpisodeSet.draw(50, 200, seed=4)
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_array_equal(a.initials, b.initials)
    assert (a.targets != a.initials).all() and a.targets.max() < 50 and len(a) == 200


def test_random_agent_never_repeats_and_evaluation_is_reproducible():
    episodes = EpisodeSet.draw(80, 30, seed=1)
    env_kwargs = {"catalog": SMALL, "split": "test"}
    first = evaluate(RandomAgent(seed=2), episodes, env_kwargs, max_turns=8, batch_size=7)
    second = evaluate(RandomAgent(seed=2), episodes, env_kwargs, max_turns=8, batch_size=7)
    np.testing.assert_array_equal(first.shown_percentile, second.shown_percentile)
    np.testing.assert_array_equal(first.success, second.success)
    assert first.ranking_percentile is None
    assert ((first.shown_percentile >= 0) & (first.shown_percentile <= 1)).all()
    assert (np.diff(first.success.astype(int), axis=1) >= 0).all()  # success is cumulative

    agent = RandomAgent(seed=0)
    agent.reset(dialog_env.make_catalog(SMALL).select("test"), 3)
    observations = {"turn": np.zeros((3, 1), dtype=np.int64)}
    shown = [np.array([0, 1, 2])]
    for turn in range(40):
        actions = agent.act(observations, {"shown_index": shown[-1]})
        shown.append(actions)
        observations = {"turn": np.full((3, 1), turn + 1)}
    history = np.stack(shown, axis=1)
    assert all(len(set(row)) == len(row) for row in history)


def test_evaluation_carries_values_after_the_target_is_found():
    class Oracle(RandomAgent):
        """Shows the target at turn 3 (cheats through a closure, for this test only)."""

        name = "oracle"

        def act(self, observations, infos):
            actions = super().act(observations, infos)
            turn = int(observations["turn"][0, 0])
            return np.where(turn == 2, self.targets, np.where(actions == self.targets, (actions + 1) % 80, actions))

    episodes = EpisodeSet.draw(80, 10, seed=5)
    oracle = Oracle(seed=1)
    oracle.targets = episodes.targets
    result = evaluate(oracle, episodes, {"catalog": SMALL, "split": "test"}, max_turns=6, batch_size=10)
    assert not result.success[:, :2].any() and result.success[:, 2:].all()
    assert (result.shown_percentile[:, 2:] == 1.0).all()
    summary = summarize(result, resamples=200)
    assert summary["turns"][2]["success"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert "| 3 | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in format_turn_table(summary)


def test_paired_difference_is_exact_for_identical_and_shifted_results():
    from agents.evaluation import EvaluationResult, paired_difference

    rng = np.random.default_rng(0)
    success = rng.random((200, 3)) < 0.4
    shown = rng.random((200, 3))
    a = EvaluationResult("a", shown, success, None, None, 100)
    b = EvaluationResult("b", shown, success, None, None, 100)
    assert paired_difference(a, b, "success", 2) == {"mean": 0.0, "low": 0.0, "high": 0.0}
    shifted = EvaluationResult("c", np.clip(shown + 0.1, None, 10), success, None, None, 100)
    difference = paired_difference(shifted, a, "shown_percentile", 1)
    assert difference["low"] == pytest.approx(0.1) and difference["high"] == pytest.approx(0.1)
    with pytest.raises(dialog_env.ConfigurationError, match="not available"):
        paired_difference(a, b, "ranking_percentile", 1)


# ---------------------------------------------------------------------------- the dialog manager
def test_model_shapes_and_padding_invariance():
    model = DialogManager(
        DialogManagerConfig(image_dim=16, vocab_size=20, embed_dim=8, word_dim=12, hidden_dim=10)
    ).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    query, state = model(torch.randn(2, 16), tokens, model.initial_state(2))
    assert query.shape == (2, 8) and state.shape == (2, 10)
    longer = torch.cat([tokens, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model.encode_text(tokens), model.encode_text(longer))  # padding changes nothing


def test_text_encoder_from_the_projected_vocabulary_equals_the_convolution():
    torch.manual_seed(0)
    config = DialogManagerConfig(image_dim=16, vocab_size=30, embed_dim=8, word_dim=12, hidden_dim=10)
    model = DialogManager(config)
    tokens = torch.randint(1, 30, (6, 7))
    tokens[0, 3:] = 0  # padding after words
    tokens[1] = 0  # a caption without words
    tokens[2, 1:] = 0  # one word: its only bigram ends on padding

    def encode_and_backward(through_vocabulary: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        # The convolution is taken when the vocabulary is larger than the batch's bigrams.
        model.config = dataclasses.replace(config, vocab_size=30 if through_vocabulary else 10**6)
        encoded = model.encode_text(tokens)
        encoded.square().sum().backward()
        return encoded.detach(), [p.grad.clone() for p in (model.word_embedding.weight, model.bigram_conv.weight)]

    vocabulary, vocabulary_grads = encode_and_backward(True)
    convolution, convolution_grads = encode_and_backward(False)
    model.config = config
    torch.testing.assert_close(vocabulary, convolution, rtol=1e-5, atol=1e-5)
    for by_vocabulary, by_convolution in zip(vocabulary_grads, convolution_grads):
        torch.testing.assert_close(by_vocabulary, by_convolution, rtol=1e-4, atol=1e-5)
    assert torch.all(vocabulary_grads[0][0] == 0)  # the padding word gets no gradient
    assert vocabulary[1].abs().sum() > 0 and torch.isfinite(vocabulary).all()
    # Without gradients the projection is cached, and a weight change is seen at once.
    model.eval()
    with torch.no_grad():
        before = model.encode_text(tokens)
        torch.testing.assert_close(model.encode_text(tokens[3:]), before[3:], rtol=0, atol=0)  # rows independent
        model.bigram_conv.weight.mul_(2.0)
        after = model.encode_text(tokens)
    assert not torch.allclose(before, after)
    with torch.enable_grad():
        torch.testing.assert_close(model.encode_text(tokens), after, rtol=1e-5, atol=1e-5)


def test_nearest_unseen_and_top_unseen():
    features = np.arange(10, dtype=np.float32)[:, None]
    ranker = Ranker(features)
    queries = np.array([[0.0], [5.2]], dtype=np.float32)
    shown = np.array([[0, 1], [5, -1]])
    np.testing.assert_array_equal(nearest_unseen(ranker, queries, shown), [2, 6])
    np.testing.assert_array_equal(top_unseen(ranker, queries, shown, 3), [[2, 3, 4], [6, 4, 7]])


class _ForgetfulIndex(KnnIndex):
    """An approximate index that finds only the nearest image (``-1`` for the rest), as IVF can."""

    name = "forgetful"

    def __init__(self, features):
        super().__init__(features)
        self._ranker = Ranker(self.features)

    def _search(self, queries, k):
        indices, distances = self._ranker.nearest(queries, k=k)
        indices[:, 1:], distances[:, 1:] = -1, np.inf
        return indices, distances


def test_top_unseen_falls_back_to_exact_search_where_an_index_finds_too_few():
    features = np.arange(10, dtype=np.float32)[:, None]
    ranker = Ranker(features)
    queries = np.array([[0.0], [5.2], [9.0]], dtype=np.float32)
    shown = np.array([[0, 1], [5, -1], [3, -1]])
    index = _ForgetfulIndex(features)
    # Dialog 3's nearest image (9) is unseen: the index's answer stands; the others are searched exactly.
    np.testing.assert_array_equal(nearest_unseen(index, queries, shown, fallback=ranker), [2, 6, 9])
    np.testing.assert_array_equal(top_unseen(index, queries, shown, 2, fallback=ranker), [[2, 3], [6, 4], [9, 8]])
    with pytest.raises(ConfigurationError, match="fewer than 1 unseen images for 2 queries"):
        nearest_unseen(index, queries, shown)


def test_agent_with_a_faiss_index_plays_the_dialogs_of_exact_search():
    pytest.importorskip("faiss")
    envs = _train_envs()
    model = _model(envs)
    episodes = EpisodeSet.draw(80, 20, seed=2)
    env_kwargs = {"catalog": SMALL, "split": "test"}
    exact = evaluate(DialogManagerAgent(model), episodes, env_kwargs, max_turns=5)
    flat = evaluate(DialogManagerAgent(model, knn="faiss-flat"), episodes, env_kwargs, max_turns=5)
    # IVF probing every list searches the whole catalogue: exact too, through the approximate code path.
    ivf = DialogManagerAgent(model, knn="faiss-ivf", knn_options={"nlist": 4, "nprobe": 4})
    probed_all = evaluate(ivf, episodes, env_kwargs, max_turns=5)
    for result in (flat, probed_all):
        np.testing.assert_array_equal(result.shown_percentile, exact.shown_percentile)
        np.testing.assert_array_equal(result.ranking_rank, exact.ranking_rank)  # the agent's ranks stay exact
    with pytest.raises(ConfigurationError, match="knn must be one of"):
        DialogManagerAgent(model, knn="annoy")


def test_agent_embeds_the_catalogue_in_blocks(monkeypatch):
    envs = _train_envs()
    model = _model(envs)
    episodes = EpisodeSet.draw(80, 20, seed=2)
    env_kwargs = {"catalog": SMALL, "split": "test"}
    one_block = evaluate(DialogManagerAgent(model), episodes, env_kwargs, max_turns=5)
    monkeypatch.setattr(dialog_manager_module, "EMBED_BLOCK_ROWS", 7)  # 80 test images: 12 blocks
    blocks = evaluate(DialogManagerAgent(model), episodes, env_kwargs, max_turns=5)
    np.testing.assert_array_equal(blocks.shown_percentile, one_block.shown_percentile)
    np.testing.assert_array_equal(blocks.ranking_rank, one_block.ranking_rank)


def test_deterministic_agent_results_do_not_depend_on_batching():
    envs = _train_envs()
    agent = DialogManagerAgent(_model(envs))
    episodes = EpisodeSet.draw(80, 25, seed=2)
    env_kwargs = {"catalog": SMALL, "split": "test"}
    small_batches = evaluate(agent, episodes, env_kwargs, max_turns=5, batch_size=4)
    one_batch = evaluate(agent, episodes, env_kwargs, max_turns=5, batch_size=25)
    np.testing.assert_array_equal(small_batches.shown_percentile, one_batch.shown_percentile)
    np.testing.assert_array_equal(small_batches.ranking_rank, one_batch.ranking_rank)


def test_agent_ranking_matches_ranker_on_embeddings():
    envs = _train_envs()
    model = _model(envs)
    agent = DialogManagerAgent(model)
    catalog = envs.catalog
    agent.reset(catalog, 16)
    observations, infos = envs.reset(seed=0)
    actions = agent.act(observations, infos)
    assert actions.shape == (16,) and not np.any(actions == infos["shown_index"])
    targets = np.asarray(infos["target_index"])
    with torch.no_grad():
        embeddings = model.embed_images(torch.from_numpy(np.array(catalog.features))).numpy()
    np.testing.assert_array_equal(
        agent.rank_targets(targets), Ranker(embeddings).query_target_ranks(agent._queries, targets)
    )


def test_gradients_repeat_exactly_with_two_threads():
    """The text encoder's backward sums in a fixed order whatever the thread count (same seed, same numbers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        model = DialogManager(DialogManagerConfig(image_dim=32, vocab_size=150))
        tokens = torch.from_numpy(np.random.default_rng(0).integers(1, 150, size=(128, 16)))
        features = torch.randn(128, 32, generator=torch.Generator().manual_seed(1))
        gradients = []
        for _ in range(4):
            model.zero_grad()
            query, _ = model(features, tokens, model.initial_state(128))
            (query**2).sum().backward()
            gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert all(torch.equal(gradients[0], other) for other in gradients[1:])
    finally:
        torch.set_num_threads(threads)


def test_masked_mean_gradient_uses_the_mask_of_its_turn():
    from agents.distributed import SINGLE_PROCESS

    per_dialog = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    active = np.array([True, True, False, True])
    loss = SINGLE_PROCESS.masked_mean(per_dialog, active)
    active &= np.array([False, True, True, True])  # a later turn ends dialog 0 (updated in place)
    loss.backward()
    assert loss.item() == pytest.approx(7.0 / 3.0)
    torch.testing.assert_close(per_dialog.grad, torch.tensor([1.0, 1.0, 0.0, 1.0]) / 3.0)


def test_pretraining_loss_falls():
    envs = _train_envs(batch=32, turns=3)
    model = _model(envs)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    pretrain(model, envs, 60, optimizer, seed=0, on_iteration=lambda i, m: losses.append(m["loss"]))
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_pretraining_is_deterministic_and_resumable():
    def train(splits):
        envs = _train_envs(batch=8, turns=3)
        model = _model(envs)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for start, stop in splits:  # stopping and starting again must not change anything
            pretrain(
                model,
                envs,
                stop,
                optimizer,
                seed=5,
                start_iteration=start,
                on_iteration=lambda i, m: losses.append(m["loss"]),
            )
        return losses, model.state_dict()

    losses_a, state_a = train([(0, 6)])
    losses_b, state_b = train([(0, 2), (2, 6)])
    assert losses_a == losses_b
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key])


# ---------------------------------------------------------------------------- policy improvement
class CountingUser(dialog_env.UserSimulator):
    """A fake user: says how far the shown image's index is from the target's."""

    name = "counting"

    @property
    def vocabulary(self):
        return dialog_env.Vocabulary(["lower", "higher", "same", "far", "near"])

    def describe(self, catalog, targets, shown, rngs):
        words = []
        for target, image, rng in zip(targets, shown, rngs):
            direction = "same" if target == image else ("higher" if target > image else "lower")
            distance = "far" if abs(int(target) - int(image)) > 20 or rng.random() < 0.1 else "near"
            words.append(f"{direction} {distance}")
        return words


def test_improved_action_is_the_arg_best_of_the_rollout_values():
    envs = _train_envs(batch=6, turns=4, user=CountingUser())
    base = _model(envs, seed=1).eval()
    catalog, vocabulary = envs.catalog, envs.vocabulary
    with torch.no_grad():
        embedding_ranker = Ranker(base.embed_images(torch.from_numpy(np.array(catalog.features))).numpy())
    observations, infos = envs.reset(seed=3)
    targets = np.asarray(infos["target_index"])
    shown = np.asarray(infos["shown_index"])[:, None]
    with torch.no_grad():
        query, state = base(
            torch.from_numpy(observations["image"]), torch.from_numpy(observations["feedback"]), base.initial_state(6)
        )
    candidates = top_unseen(embedding_ranker, query.numpy(), shown, 4)
    seeds = list(range(100, 124))
    values = rollout_values(base, envs.model, embedding_ranker, state, candidates, targets,
                            shown, 2, [np.random.default_rng(s) for s in seeds])  # fmt: skip
    # Reference: each rollout alone, step by step.
    for b in range(6):
        for k in range(4):
            rng = np.random.default_rng(seeds[b * 4 + k])
            h = state[b : b + 1]
            current, history = int(candidates[b, k]), list(shown[b]) + [int(candidates[b, k])]
            total, found = envs.ranker.target_ranks(np.array([current]), targets[b : b + 1])[0], current == targets[b]
            for _ in range(2):
                text = envs.user.describe(catalog, targets[b : b + 1], np.array([current]), [rng])
                with torch.no_grad():
                    q, h = base(
                        torch.from_numpy(catalog.features[[current]]),
                        torch.from_numpy(vocabulary.encode_batch(text)),
                        h,
                    )
                current = int(nearest_unseen(embedding_ranker, q.numpy(), np.array([history]))[0])
                history.append(current)
                total += 0 if found else envs.ranker.target_ranks(np.array([current]), targets[b : b + 1])[0]
                found |= current == targets[b]
            assert values[b, k] == total
    actions = improved_actions(candidates, values)
    np.testing.assert_array_equal(actions, candidates[np.arange(6), np.argmin(values, axis=1)])
    assert all(values[b][list(candidates[b]).index(actions[b])] == values[b].min() for b in range(6))
    # Ties go to the base policy's earlier candidate.
    np.testing.assert_array_equal(improved_actions(np.array([[5, 6, 7]]), np.array([[3.0, 1.0, 1.0]])), [6])


# ---------------------------------------------------------------------------- train_agent.py
TINY = ["--pretrain-iterations", "4", "--improve-iterations", "2", "--batch-size", "8", "--train-turns", "3",
        "--max-turns", "4",
        "--eval-episodes", "40", "--checkpoint-every", "2", "--no-progress", "--seed", "3"]  # fmt: skip


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "train_agent.py"), *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_train_agent_end_to_end(tmp_path, small_catalog_file):
    result = _run(["--catalog", small_catalog_file, "--run-name", "tiny", "--runs-dir", str(tmp_path), *TINY], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["results"]) == {"paper-stage1", "paper-stage2", "random"}
    stage2 = metrics["results"]["paper-stage2"]
    assert len(stage2["turns"]) == 4 and {"ranking_percentile", "recall@10", "recall@50"} <= set(stage2["turns"][0])
    # 8 dialogs of 3 turns (4 captions each) per iteration; stage 2 looks 4 candidates ahead 2 + 1 turns.
    stage1_calls, stage2_calls = 8 * 4, 8 * 4 + 8 * 4 * 3
    assert metrics["results"]["paper-stage1"]["interaction_budget"] == {
        "simulator_calls": 4 * stage1_calls, "dialog_turns": 4 * stage1_calls, "lookahead_calls": 0}  # fmt: skip
    assert stage2["interaction_budget"] == {
        "simulator_calls": 4 * stage1_calls + 2 * stage2_calls, "dialog_turns": 6 * stage1_calls,
        "lookahead_calls": 2 * (stage2_calls - stage1_calls)}  # fmt: skip
    assert metrics["results"]["random"]["interaction_budget"]["simulator_calls"] == 0
    assert f"training budget: {4 * stage1_calls + 2 * stage2_calls:,} simulator calls" in result.stdout
    for name in ("last.pt", "stage1.pt", "final.pt"):
        assert (run / "checkpoints" / name).exists()
    assert list((run / "tensorboard").iterdir())
    assert "paper-stage2: per-turn results on the test split" in result.stdout
    assert (
        "| turn | shown-image rank pct. (%) | success by turn (%) | agent ranking pct. (%) | R@10 (%) | R@50 (%) |"
        in result.stdout
    )

    # Same seed, same metrics.
    twin = _run(["--catalog", small_catalog_file, "--run-name", "twin", "--runs-dir", str(tmp_path), *TINY], tmp_path)
    assert twin.returncode == 0, twin.stderr
    assert json.loads((tmp_path / "twin" / "metrics.json").read_text())["results"] == metrics["results"]

    # Resuming from the stage-1 checkpoint reproduces stage 2 exactly.
    again = tmp_path / "again"
    shutil.copytree(run, again)
    shutil.copy(again / "checkpoints" / "stage1.pt", again / "checkpoints" / "last.pt")
    resumed = _run(
        ["--catalog", small_catalog_file, "--run-name", "again", "--runs-dir", str(tmp_path), "--resume", *TINY],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert json.loads((again / "metrics.json").read_text())["results"] == metrics["results"]

    # The policy-improvement comparison reads the run's checkpoints.
    check = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "policy_improvement.py"), "--run", str(run), "--control", str(again),
         "--episodes", "30", "--out", str(tmp_path / "pi")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads((tmp_path / "pi" / "policy_improvement.json").read_text())
    assert len(report["summaries"]) == 3 and len(report["differences"]) == 2
    stage2_vs_control = report["differences"][1]["turns"]["10"]["success"]
    assert stage2_vs_control["mean"] == 0.0  # the control here is the same final model

    # An existing run is never overwritten silently.
    clash = _run(["--catalog", small_catalog_file, "--run-name", "tiny", "--runs-dir", str(tmp_path), *TINY], tmp_path)
    assert clash.returncode == 2 and "--resume" in clash.stderr


def test_train_agent_rejects_bad_arguments(tmp_path):
    result = _run(["--batch-size", "0", "--agent", "nope"], tmp_path)
    assert result.returncode == 2
    assert "--agent must be one of ['paper', 'dialog-retriever', 'random'" in result.stderr
    assert "--batch-size must be >= 1" in result.stderr


def test_ctrl_c_saves_a_checkpoint_and_resume_reaches_the_same_metrics(tmp_path, small_catalog_file):
    import signal
    import time

    budget = ["--catalog", small_catalog_file, "--runs-dir", str(tmp_path), "--pretrain-iterations", "400",
              "--improve-iterations", "2", "--batch-size", "4", "--train-turns", "2", "--max-turns", "3",
              "--eval-episodes", "20", "--checkpoint-every", "5", "--no-progress", "--no-eval-random", "--seed",
                  "4"]  # fmt: skip
    process = subprocess.Popen([sys.executable, str(ROOT / "train_agent.py"), "--run-name", "interrupted", *budget],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)  # fmt: skip
    last = tmp_path / "interrupted" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "interrupted: checkpoint saved after stage 1 iteration" in stderr and "Traceback" not in stderr
    stopped_at = torch.load(last, weights_only=False)["iteration"]
    assert 0 < stopped_at < 400

    resumed = _run(["--run-name", "interrupted", "--resume", *budget], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {last}: stage pretrain, iteration {stopped_at}" in resumed.stdout
    straight = _run(["--run-name", "straight", *budget], tmp_path)
    assert straight.returncode == 0, straight.stderr
    results = [
        json.loads((tmp_path / name / "metrics.json").read_text())["results"] for name in ("interrupted", "straight")
    ]
    assert results[0] == results[1]


def test_train_agent_evaluates_with_a_shopper_who_leaves_or_settles(tmp_path, small_catalog_file, capsys):
    import train_agent

    args = train_agent.Args(agent="random", catalog=small_catalog_file, run_name="settling", runs_dir=str(tmp_path),
                            eval_episodes=30, max_turns=4, eval_patience=2, eval_accept_rank=5,
                            progress=False)  # fmt: skip
    assert train_agent.run(args) == 0
    turns = json.loads((tmp_path / "settling" / "metrics.json").read_text())["results"]["random"]["turns"]
    assert {"success", "satisfied", "left"} <= set(turns[-1])
    assert turns[-1]["satisfied"]["mean"] >= turns[-1]["success"]["mean"] and turns[-1]["left"]["mean"] > 0
    assert "shopper left (%)" in capsys.readouterr().out
    with pytest.raises(dialog_env.ConfigurationError, match="--eval-patience must be >= 1"):
        train_agent.validate_args(train_agent.Args(eval_patience=0))


def test_train_agent_seeds_benchmark_runs_each_seed_and_reports_the_spread(tmp_path, small_catalog_file):
    out = tmp_path / "seeds.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "train_agent_seeds.py"), "--seeds", "1", "2",
               "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--",
               "--catalog", small_catalog_file, *TINY[:TINY.index("--seed")], "--max-turns", "10"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(out.read_text())
    assert set(report["seeds"]) == {"1", "2"} and report["machine"]["cpu_count"] >= 1
    per_seed = [report["seeds"][s]["results"]["paper-stage2"]["10"]["success"] for s in ("1", "2")]
    summary = report["summary"]["paper-stage2"]["10"]["success"]
    assert summary["min"] == min(per_seed) and summary["max"] == max(per_seed)
    assert summary["mean"] == pytest.approx(sum(per_seed) / 2)
    for seed in ("1", "2"):  # each seed's numbers are its own run's metrics.json
        metrics = json.loads((tmp_path / "runs" / f"paper-s{seed}" / "metrics.json").read_text())
        turn = next(row for row in metrics["results"]["paper-stage1"]["turns"] if row["turn"] == 5)
        reported = report["seeds"][seed]["results"]["paper-stage1"]["5"]
        assert reported["shown_percentile"] == turn["shown_percentile"]["mean"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("reusing") == 2  # finished runs are not trained again
    assert json.loads(out.read_text())["summary"] == report["summary"]


@pytest.mark.parametrize("parallel", [False, True])
def test_main_job_speed_benchmark_times_both_sides_and_compares_their_models(tmp_path, small_catalog_file, parallel):
    # The baseline is this checkout's own HEAD: the benchmark's plumbing, not a speed-up, is tested.
    worktrees_before = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    out = tmp_path / "report"
    command = [sys.executable, str(ROOT / "benchmarks" / "main_job_speed.py"), "--baseline", "HEAD", "--seeds", "3",
               *(["--parallel"] if parallel else []), "--runs-dir", str(tmp_path / "runs"), "--episodes", "30",
               "--out", str(out), "--", "--catalog", small_catalog_file, *TINY[: TINY.index("--seed")],
               "--max-turns", "10"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads((out / "main_job_speed.json").read_text())
    baseline, current = report["baseline"]["runs"][0], report["current"]["runs"][0]
    assert baseline["wall_seconds"] > 0 and current["wall_seconds"] > 0 and report["parallel"] is parallel
    assert report["median_ratio"] == pytest.approx(current["wall_seconds"] / baseline["wall_seconds"])
    assert Path(baseline["run"]).parent.name == "baseline-s3" and Path(current["run"]).parent.name == "current-s3"
    # Same code, same seed, same machine: the two sides train the same model.
    assert baseline["success"] == current["success"]
    (paired,) = report["paired"]
    for turn in ("5", "10"):
        difference = paired["current_minus_baseline"][turn]
        assert difference["mean"] == 0.0 and difference["low"] <= 0.0 <= difference["high"]
        assert report["over_seeds"][turn]["current_minus_baseline"]["mean"] == 0.0
    assert "B / A" in (out / "main_job_speed.md").read_text()
    if not parallel:  # a rebuilt report takes the finished runs: the same times and results
        again = subprocess.run([*command[:2], "--reuse", *command[2:]], capture_output=True, text=True, timeout=600,
                               cwd=tmp_path)  # fmt: skip
        assert again.returncode == 0 and again.stdout.count("reusing") == 2, again.stdout + again.stderr
        rebuilt = json.loads((out / "main_job_speed.json").read_text())
        assert rebuilt["ratios"] == report["ratios"] and rebuilt["over_seeds"] == report["over_seeds"]
        assert rebuilt["reused_runs"] == ["baseline-s3", "current-s3"]
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert worktrees.stdout == worktrees_before  # the baseline's worktree is gone
