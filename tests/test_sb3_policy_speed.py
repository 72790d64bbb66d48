"""The cheap SB3 policy side (issue 14): the table-lookup text convolution, the fast categorical
distribution and policy, and the benchmark's thread controls compute what SB3 / torch compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.distributions import CategoricalDistribution  # noqa: E402
from stable_baselines3.common.policies import MultiInputActorCriticPolicy  # noqa: E402

import dialog_env  # noqa: E402
from agents.sb3 import DialogFeaturesExtractor, make_model, make_training_env  # noqa: E402
from agents.sb3_policies import (  # noqa: E402
    FastCategoricalDistribution,
    FastCategoricalMultiInputPolicy,
    categorical_log_prob_and_entropy,
    policy_for,
    sample_categorical,
)
from dialog_env.errors import ConfigurationError  # noqa: E402

SMALL = {"num_train": 60, "num_test": 20, "dim": 8, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def envs():
    return make_training_env("ppo", {"catalog": SMALL}, n_envs=2, seed=0, max_turns=3)


def _reference_text(extractor: DialogFeaturesExtractor, tokens: torch.Tensor) -> torch.Tensor:
    """The caption encoding as first written: nn.Embedding -> nn.Conv1d -> ReLU -> masked max."""
    words = extractor.embedding(tokens).transpose(1, 2)  # (B, word_dim, L)
    channels = torch.relu(extractor.conv(words))  # (B, text_dim, L)
    return (channels * (tokens != 0).unsqueeze(1)).amax(dim=2)


# ---------------------------------------------------------------------------- features extractor
@pytest.mark.parametrize(("kernel_size", "batch"), [(1, 9), (3, 9), (5, 9), (3, 4), (3, 64)])
def test_table_convolution_equals_conv1d_and_its_gradients(envs, kernel_size, batch):
    torch.manual_seed(kernel_size)
    extractor = DialogFeaturesExtractor(envs.observation_space, kernel_size=kernel_size)
    assert 4 < extractor.TABLE_MIN_BATCH <= 9  # the batches below take both paths
    with torch.no_grad():  # larger weights than the init, so that differences would show
        extractor.embedding.weight[1:].normal_()
        extractor.conv.weight.normal_()
        extractor.conv.bias.normal_()
    length = envs.observation_space["feedback"].shape[0]
    tokens = torch.randint(1, extractor.vocab_size, (batch, length))
    tokens[0] = 0  # all padding
    tokens[1, 3:] = 0  # a short caption
    tokens[2, 1] = 0  # padding inside a caption too (the mask drops that position)
    tokens[3, -1] = 0

    mine = torch.relu(extractor._convolve_words(tokens)).transpose(1, 2)
    reference = torch.relu(extractor.conv(extractor.embedding(tokens).transpose(1, 2)))
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)

    observations = {
        "feedback": tokens.float(),
        "image": torch.randn(batch, envs.observation_space["image"].shape[0]),
        "turn": torch.ones(batch, 1),
    }
    features = extractor(observations)
    text_dim = extractor.conv.out_channels
    torch.testing.assert_close(features[:, :text_dim], _reference_text(extractor, tokens), rtol=1e-5, atol=1e-5)
    assert torch.all(features[0, :text_dim] == 0)  # a caption without tokens encodes to zeros

    # Gradients: the same as through nn.Embedding + nn.Conv1d, and none for the padding row.
    weights = torch.randn(batch, text_dim)
    parameters = [extractor.embedding.weight, extractor.conv.weight, extractor.conv.bias]
    mine_grads = torch.autograd.grad((extractor(observations)[:, :text_dim] * weights).sum(), parameters)
    reference_grads = torch.autograd.grad((_reference_text(extractor, tokens) * weights).sum(), parameters)
    for got, expected in zip(mine_grads, reference_grads, strict=True):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.all(mine_grads[0][0] == 0)


def test_extractor_state_dict_keeps_its_parameter_names(envs):
    extractor = DialogFeaturesExtractor(envs.observation_space)
    assert {"embedding.weight", "conv.weight", "conv.bias"} <= set(extractor.state_dict())
    assert isinstance(extractor.conv, torch.nn.Conv1d)


# ---------------------------------------------------------------------------- distribution
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_actions", [7, 10_000])
def test_log_prob_and_entropy_equal_sb3_categorical(num_actions, dtype):
    torch.manual_seed(0)
    logits = torch.randn(16, num_actions, dtype=dtype) * 5
    logits[0] = 0.0  # uniform: the largest entropy, log(N)
    logits[1, :] = -30.0
    logits[1, 3] = 30.0  # nearly one-hot
    actions = torch.randint(0, num_actions, (16,))
    actions[1] = 3
    reference = CategoricalDistribution(num_actions).proba_distribution(logits)
    fast = FastCategoricalDistribution(num_actions).proba_distribution(logits)
    expected_log_prob, expected_entropy = reference.log_prob(actions), reference.entropy()
    fused_log_prob, fused_entropy = fast.log_prob_and_entropy(actions.float())
    # Sums of 10,000 float32 terms in another order differ by a few 1e-6 (SB3's own entropy is
    # ~2e-6 off the float64 value there); below: never less accurate than SB3's.
    tolerance = 1e-6 if dtype == torch.float32 and num_actions < 100 else (5e-6 if dtype == torch.float32 else 1e-12)
    for got, expected in (
        (fast.log_prob(actions), expected_log_prob),
        (fused_log_prob, expected_log_prob),
        (fast.entropy(), expected_entropy),
        (fused_entropy, expected_entropy),
    ):
        assert got.shape == expected.shape == (16,) and got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    log_p = torch.log_softmax(logits.double(), dim=1)
    exact_entropy = -(log_p.exp() * log_p).sum(dim=1)
    sb3_error = (expected_entropy.double() - exact_entropy).abs().max()
    assert (fused_entropy.double() - exact_entropy).abs().max() <= sb3_error + 1e-6
    torch.testing.assert_close(fast.mode(), logits.argmax(dim=1))
    torch.testing.assert_close(fast.distribution.probs, reference.distribution.probs)


def test_fused_log_prob_and_entropy_gradient_equals_autograd():
    torch.manual_seed(1)
    logits = (torch.randn(6, 40, dtype=torch.float64) * 3).requires_grad_()
    actions = torch.randint(0, 40, (6,))
    grad_log_prob, grad_entropy = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    reference = CategoricalDistribution(40).proba_distribution(logits)
    expected = torch.autograd.grad(
        (reference.log_prob(actions) * grad_log_prob + reference.entropy() * grad_entropy).sum(), logits
    )[0]
    log_prob, entropy = categorical_log_prob_and_entropy(logits, actions)
    got = torch.autograd.grad((log_prob * grad_log_prob + entropy * grad_entropy).sum(), logits)[0]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: categorical_log_prob_and_entropy(x, actions), (logits,))
    with pytest.raises(ConfigurationError, match="one action per row"):
        categorical_log_prob_and_entropy(logits, actions[:3])


def test_samples_follow_the_softmax_law():
    torch.manual_seed(2)
    logits = torch.tensor([2.0, 0.0, -1.0, 1.0, -1e4, 0.5])  # index 4: probability 0 in float32
    probabilities = torch.softmax(logits, dim=0).double()
    draws = 60_000
    distribution = FastCategoricalDistribution(6).proba_distribution(logits.expand(draws, 6))
    samples = distribution.get_actions(deterministic=False)
    assert samples.shape == (draws,) and samples.dtype == torch.int64
    counts = torch.bincount(samples, minlength=6).double()
    assert counts[4] == 0
    expected = probabilities * draws
    keep = expected > 0
    chi_square = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    assert chi_square < 25.7  # the 0.9999 quantile of chi-square with 5 degrees of freedom
    # And per action, within 4.5 binomial standard deviations.
    spread = (probabilities * (1 - probabilities) * draws).sqrt()
    assert torch.all((counts - expected).abs() <= 4.5 * spread + 1e-9)
    assert torch.all(distribution.get_actions(deterministic=True) == 0)


def test_sampling_is_seeded_and_rejects_bad_shapes():
    log_probs = torch.log_softmax(torch.randn(5, 1000), dim=1)
    first = sample_categorical(log_probs, generator=torch.Generator().manual_seed(3))
    again = sample_categorical(log_probs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (5,) and int(first.max()) < 1000
    one_hot = torch.full((3, 50), -1e9)
    one_hot[torch.arange(3), torch.tensor([0, 17, 49])] = 0.0
    assert sample_categorical(one_hot).tolist() == [0, 17, 49]
    with pytest.raises(ConfigurationError, match=r"\(B, N\)"):
        sample_categorical(torch.zeros(10))


# ---------------------------------------------------------------------------- policy
def test_make_model_gives_ppo_and_a2c_index_agents_the_fast_policy(envs):
    for agent in ("ppo", "a2c"):
        policy = make_model(agent, envs, device="cpu").policy
        assert type(policy) is FastCategoricalMultiInputPolicy
        assert isinstance(policy.action_dist, FastCategoricalDistribution)
    assert not isinstance(make_model("dqn", envs, device="cpu", buffer_size=10).policy, FastCategoricalMultiInputPolicy)
    query_envs = make_training_env("ppo-query", {"catalog": SMALL}, n_envs=2, seed=0, max_turns=3)
    assert type(make_model("ppo-query", query_envs, device="cpu").policy) is MultiInputActorCriticPolicy
    assert policy_for(type(make_model("ppo", envs, device="cpu")), envs.action_space, "OtherPolicy") == "OtherPolicy"


def test_fast_policy_equals_sb3_policy_with_the_same_weights(envs):
    from stable_baselines3 import PPO

    from agents.sb3 import model_hyperparameters

    fast = make_model("ppo", envs, device="cpu").policy
    settings = model_hyperparameters("ppo", device="cpu")
    reference = PPO("MultiInputPolicy", envs, **settings).policy
    assert list(reference.state_dict()) == list(fast.state_dict())
    reference.load_state_dict(fast.state_dict())

    observations = envs.reset()
    for _ in range(3):
        observations, *_ = envs.step(np.array([envs.action_space.sample() for _ in range(envs.num_envs)]))
    obs, _ = fast.obs_to_tensor(observations)
    actions = torch.tensor([0, 5])
    got = fast.evaluate_actions(obs, actions)
    expected = reference.evaluate_actions(obs, actions)
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    # The training loss has the same gradient.
    loss_mine = got[0].sum() + (got[1] * torch.tensor([0.3, -1.0])).sum() + got[2].sum()
    loss_theirs = expected[0].sum() + (expected[1] * torch.tensor([0.3, -1.0])).sum() + expected[2].sum()
    grads_mine = torch.autograd.grad(loss_mine, list(fast.parameters()))
    grads_theirs = torch.autograd.grad(loss_theirs, list(reference.parameters()))
    for mine, theirs in zip(grads_mine, grads_theirs, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    # Deterministic actions are the argmax; predict goes through the fast distribution.
    with torch.no_grad():
        deterministic, _, _ = fast(obs, deterministic=True)
        logits = fast.action_net(fast.mlp_extractor.forward_actor(fast.extract_features(obs)))
    assert torch.equal(deterministic, logits.argmax(dim=1))
    np.testing.assert_array_equal(fast.predict(observations, deterministic=True)[0], logits.argmax(dim=1).numpy())


def test_fast_policy_learns_and_is_reproducible(tmp_path):
    def train():
        envs = make_training_env("ppo", {"catalog": SMALL}, n_envs=2, seed=0, max_turns=3)
        model = make_model("ppo", envs, device="cpu", n_steps=32, batch_size=32, n_epochs=2, seed=4)
        model.learn(128)
        return model

    first, second = train(), train()
    for (name, a), (_, b) in zip(first.policy.state_dict().items(), second.policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    first.save(tmp_path / "ppo.zip")
    from agents.sb3 import load_model

    envs = make_training_env("ppo", {"catalog": SMALL}, n_envs=2, seed=0, max_turns=3)
    loaded = load_model("ppo", tmp_path / "ppo.zip", envs, device="cpu")
    assert type(loaded.policy) is FastCategoricalMultiInputPolicy
    for (name, a), (_, b) in zip(first.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_distribution_attribute_refuses_assignment():
    distribution = FastCategoricalDistribution(4)
    assert distribution.distribution is None
    with pytest.raises(ConfigurationError, match="proba_distribution"):
        distribution.logits  # noqa: B018 - the property raises
    with pytest.raises(ConfigurationError, match="proba_distribution"):
        distribution.distribution = torch.distributions.Categorical(logits=torch.zeros(4))


# ---------------------------------------------------------------------------- benchmark threads
def test_benchmark_sets_and_restores_blas_and_torch_threads():
    from benchmarks.sb3_speed import blas_threads_in_use, numpy_blas_threads, torch_threads

    before = blas_threads_in_use()
    with numpy_blas_threads(1) as inside:
        assert set(inside) == set(before)
        assert all(count == 1 for count in inside.values())
    assert blas_threads_in_use() == before
    with numpy_blas_threads(0) as untouched:
        assert untouched == before
    torch_before = torch.get_num_threads()
    with torch_threads(1) as count:
        assert count == torch.get_num_threads() == 1
    assert torch.get_num_threads() == torch_before
    if not before:
        pytest.skip("no OpenBLAS loaded here: NumPy uses another BLAS")
    assert dialog_env is not None
