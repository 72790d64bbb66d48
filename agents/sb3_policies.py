"""A cheaper categorical policy for SB3's PPO and A2C over large ``Discrete`` action spaces.

The index agents act over ``Discrete(N)``, one action per catalogue image (``N = 10,000`` on the
default catalogue). SB3's :class:`~stable_baselines3.common.distributions.CategoricalDistribution`
wraps ``torch.distributions.Categorical``, whose costs grow with ``N`` in ways that do not matter
for a handful of actions but dominate a PPO step here (issue 14, profile of ``model.learn`` at
``n_envs=64``): ``torch.multinomial`` draws ``N`` exponential variates per sample (about 15-19 ms
for a ``(64, 10000)`` batch on a 2-core CPU), the constructor normalises the logits with a
separate ``logsumexp`` and validates them, ``log_prob`` validates the actions, and the autograd
graph of ``log_prob`` plus ``entropy`` makes about ten passes over the ``(batch, N)`` logits.

:class:`FastCategoricalDistribution` is the same distribution with the same parameters (the
logits of ``action_net``), computed with fewer passes:

- ``sample``: inverse-CDF sampling, one uniform variate per row and a binary search in the
  float64 cumulative sum of the probabilities. It draws from the same law as ``multinomial``
  (exactly, up to the float32 rounding of the probabilities that both use); an action of
  probability 0 is never drawn.
- ``mode``: ``argmax`` of the logits.
- ``log_prob`` / ``entropy``: the values of SB3's (``logits - logsumexp(logits)`` and
  ``-sum(p * log p)``), from one fused ``log_softmax``; no argument validation.
- ``log_prob_and_entropy``: both at once with a hand-written backward pass
  (:func:`categorical_log_prob_and_entropy`), used by :class:`FastCategoricalMultiInputPolicy`'s
  ``evaluate_actions``, the training step of PPO and A2C.

:class:`FastCategoricalMultiInputPolicy` is SB3's ``MultiInputPolicy``
(:class:`~stable_baselines3.common.policies.MultiInputActorCriticPolicy`) with this distribution
for ``Discrete`` action spaces (any other space keeps SB3's distribution). Its parameters and
their names are SB3's, so state dicts of either policy load into the other.
:func:`policy_for` picks it for the algorithms it fits (PPO, A2C).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch.distributions import Categorical

try:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.distributions import CategoricalDistribution
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy
    from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
except ImportError as error:  # an optional dependency (setup.cfg extra "sb3")
    from dialog_env.errors import DependencyNotInstalled

    raise DependencyNotInstalled(
        f'the Stable-Baselines3 policies need stable-baselines3: pip install "dialog-retrieval-env[sb3]" ({error})'
    ) from error

from dialog_env.errors import ConfigurationError

__all__ = [
    "FastCategoricalDistribution",
    "FastCategoricalMultiInputPolicy",
    "categorical_log_prob_and_entropy",
    "policy_for",
    "sample_categorical",
]


# ---------------------------------------------------------------------------- functions
def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One action per row of a categorical distribution, by inverse-CDF sampling.

    Draws ``u ~ U[0, 1)`` per row and returns the first index whose cumulative probability
    exceeds ``u`` times the row's total (the total absorbs rounding; the sum runs in float64, so
    the cumulative sum of 10,000 probabilities keeps every one of them). Same law as
    ``torch.multinomial(log_probs.exp(), 1)``; an index of probability 0 is never returned.

    Args:
        log_probs: ``(B, N)`` float log-probabilities (normalised or not: only their ratios
            matter, as long as ``max`` per row is finite and ``exp`` does not overflow; use the
            output of ``log_softmax``).
        generator: torch generator of the uniform variates (``None``: torch's global one, which
            SB3 seeds).

    Returns:
        ``(B,)`` int64 indices in ``[0, N)``.
    """
    if log_probs.dim() != 2 or log_probs.shape[1] < 1:
        raise ConfigurationError(
            f"sample_categorical() needs (B, N) log-probabilities, got shape {tuple(log_probs.shape)}"
        )
    cumulative = torch.cumsum(log_probs.exp(), dim=1, dtype=torch.float64)  # (B, N)
    uniform = torch.rand(
        (log_probs.shape[0], 1), dtype=torch.float64, device=log_probs.device, generator=generator
    )  # (B, 1)
    # right=True: the first index with cumulative > u * total, so a zero-probability index (equal
    # cumulative to its predecessor) is never hit; the clamp only guards u * total rounding up to total.
    indices = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True)
    return indices.clamp_(max=log_probs.shape[1] - 1).squeeze(1)


class _LogProbEntropy(torch.autograd.Function):
    """``log p(a)`` and ``H(p)`` of ``p = softmax(logits)``, with one backward pass over the logits."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = torch.log_softmax(logits, dim=1)  # (B, N)
        p = log_p.exp()
        # H = -sum_i p_i log p_i with torch's pairwise sum: a batched dot product (bmm) saves the
        # (B, N) temporary but accumulates in order, off by ~1e-4 relative at N = 10,000.
        entropy = -(p * log_p).sum(dim=1)  # (B,)
        log_prob = log_p.gather(1, actions.unsqueeze(1)).squeeze(1)  # (B,)
        ctx.save_for_backward(log_p, p, entropy, actions)
        return log_prob, entropy

    @staticmethod
    def backward(ctx: Any, grad_log_prob: torch.Tensor, grad_entropy: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_p, p, entropy, actions = ctx.saved_tensors
        # d log p_a / dx_j = [j = a] - p_j and dH / dx_j = -p_j (log p_j + H), so
        # grad_j = p_j (c1 log p_j + c0) + [j = a] g_lp with c1 = -g_H and c0 = -(g_lp + g_H H).
        c1 = (-grad_entropy).unsqueeze(1)  # (B, 1)
        c0 = (-(grad_log_prob + grad_entropy * entropy)).unsqueeze(1)  # (B, 1)
        grad = torch.addcmul(c0, log_p, c1).mul_(p)  # (B, N)
        grad.scatter_add_(1, actions.unsqueeze(1), grad_log_prob.unsqueeze(1))
        return grad, None


def categorical_log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``actions`` and entropies of ``Categorical(logits=logits)``, fused.

    The values are those of ``torch.distributions.Categorical`` (SB3's
    ``CategoricalDistribution``) for finite logits; the gradient w.r.t. ``logits`` is computed
    by hand in one pass over ``(B, N)`` instead of autograd's chain of ``log_softmax``,
    ``gather``, ``softmax``, ``mul`` and ``sum`` backward passes.

    Args:
        logits: ``(B, N)`` float logits (finite).
        actions: ``(B,)`` (or ``(B, 1)``) action indices in ``[0, N)``, any integer or float dtype.

    Returns:
        ``(log_prob, entropy)``, each ``(B,)`` of the logits' dtype (nats).

    Raises:
        ConfigurationError: ``logits`` not 2-D, or not one action per row.
    """
    if logits.dim() != 2:
        raise ConfigurationError(f"logits must be (B, N), got shape {tuple(logits.shape)}")
    actions = actions.long().reshape(-1)
    if actions.shape[0] != logits.shape[0]:
        raise ConfigurationError(
            f"need one action per row of the logits: {logits.shape[0]} rows, {actions.shape[0]} actions"
        )
    return _LogProbEntropy.apply(logits, actions)


# ---------------------------------------------------------------------------- distribution
class FastCategoricalDistribution(CategoricalDistribution):
    """SB3's :class:`CategoricalDistribution` with cheap sampling and no argument validation.

    Same parameters (``proba_distribution_net`` is SB3's ``nn.Linear``), same law, same
    ``log_prob`` and ``entropy`` values (see the module docstring for how each is computed).
    ``distribution`` is built on request, as a ``torch.distributions.Categorical`` (without
    validation), for code that reads it; the methods here do not use it.

    Args:
        action_dim: number of actions ``N``.
    """

    def __init__(self, action_dim: int) -> None:
        self._logits: torch.Tensor | None = None
        self._log_probs: torch.Tensor | None = None
        super().__init__(action_dim)

    @property
    def distribution(self) -> Categorical | None:  # type: ignore[override]
        """The current distribution as ``torch.distributions.Categorical`` (``None`` before ``proba_distribution``)."""
        if self._logits is None:
            return None
        return Categorical(logits=self._logits, validate_args=False)

    @distribution.setter
    def distribution(self, value: None) -> None:
        # SB3's Distribution.__init__ assigns None; anything else would bypass proba_distribution.
        if value is not None:
            raise ConfigurationError("set FastCategoricalDistribution's logits with proba_distribution(logits)")
        self._logits, self._log_probs = None, None

    def proba_distribution(self, action_logits: torch.Tensor) -> FastCategoricalDistribution:
        """Set the logits.

        Args:
            action_logits: ``(B, N)`` float logits (``action_net``'s output).

        Returns:
            ``self``, as SB3's distributions do.
        """
        self._logits, self._log_probs = action_logits, None
        return self

    @property
    def logits(self) -> torch.Tensor:
        """``(B, N)`` the logits given to :meth:`proba_distribution`."""
        if self._logits is None:
            raise ConfigurationError("FastCategoricalDistribution: call proba_distribution(logits) first")
        return self._logits

    @property
    def log_probs(self) -> torch.Tensor:
        """``(B, N)`` normalised log-probabilities, ``log_softmax(logits)`` (computed once per logits)."""
        if self._log_probs is None:
            self._log_probs = torch.log_softmax(self.logits, dim=1)
        return self._log_probs

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-probabilities of ``(B,)`` actions."""
        return self.log_probs.gather(1, actions.long().reshape(-1, 1)).squeeze(1)

    def entropy(self) -> torch.Tensor:
        """``(B,)`` entropies (nats)."""
        log_p = self.log_probs
        return -(log_p.exp() * log_p).sum(dim=1)

    def log_prob_and_entropy(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_prob` and :meth:`entropy` in one go, with a fused backward pass (for training)."""
        return categorical_log_prob_and_entropy(self.logits, actions)

    def sample(self) -> torch.Tensor:
        """``(B,)`` int64 actions drawn from the distribution (:func:`sample_categorical`)."""
        with torch.no_grad():
            return sample_categorical(self.log_probs.detach())

    def mode(self) -> torch.Tensor:
        """``(B,)`` int64 most probable actions (``argmax`` of the logits)."""
        return torch.argmax(self.logits, dim=1)


# ---------------------------------------------------------------------------- policy
class FastCategoricalMultiInputPolicy(MultiInputActorCriticPolicy):
    """SB3's ``MultiInputPolicy`` for PPO/A2C, with :class:`FastCategoricalDistribution` for ``Discrete`` actions.

    Takes exactly the arguments of :class:`MultiInputActorCriticPolicy` and has the same modules
    and parameter names. On another action space it is ``MultiInputActorCriticPolicy``.
    """

    def _build(self, lr_schedule: Schedule) -> None:
        if isinstance(self.action_space, spaces.Discrete):
            self.action_dist = FastCategoricalDistribution(int(self.action_space.n))
        super()._build(lr_schedule)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Values, log-probabilities of ``actions`` and entropies (PPO's and A2C's training step).

        As SB3's, but for ``Discrete`` actions the log-probabilities and entropies come from one
        fused function (:meth:`FastCategoricalDistribution.log_prob_and_entropy`).

        Args:
            obs: a batch of ``B`` observations (tensors).
            actions: ``(B,)`` actions.

        Returns:
            ``(values (B, 1), log_prob (B,), entropy (B,))``.
        """
        if not isinstance(self.action_dist, FastCategoricalDistribution):
            return super().evaluate_actions(obs, actions)
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        log_prob, entropy = self.action_dist.proba_distribution(self.action_net(latent_pi)).log_prob_and_entropy(
            actions
        )
        return self.value_net(latent_vf), log_prob, entropy


#: The algorithms :class:`FastCategoricalMultiInputPolicy` is written for (actor-critic, on-policy).
FAST_POLICY_ALGORITHMS: tuple[type[BaseAlgorithm], ...] = (PPO, A2C)


def policy_for(
    algorithm: type[BaseAlgorithm], action_space: spaces.Space, default: str | type = "MultiInputPolicy"
) -> str | type:
    """The policy ``make_model`` gives ``algorithm`` on ``action_space``.

    Args:
        algorithm: the SB3 algorithm class.
        action_space: the training environment's action space.
        default: the policy otherwise (SB3's alias or class).

    Returns:
        :class:`FastCategoricalMultiInputPolicy` in place of SB3's ``"MultiInputPolicy"`` for PPO
        and A2C (exactly these classes) on a ``Discrete`` space, else ``default`` (another policy
        chosen on purpose is kept).
    """
    if (
        default == "MultiInputPolicy"
        and algorithm in FAST_POLICY_ALGORITHMS
        and isinstance(action_space, spaces.Discrete)
    ):
        return FastCategoricalMultiInputPolicy
    return default
