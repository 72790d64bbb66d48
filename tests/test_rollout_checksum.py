"""A pinned 10,000-step seeded vector-env rollout for every user simulator.

The digests below were taken on the code before the turn model (``dialog_env.dynamics``) and the
shoe-domain package were introduced, so any refactor that changes a single observation, reward,
termination, truncation or info value of these rollouts fails here. A rollout is 50 dialogs x 200
steps of seeded random actions (autoresets included), hashed step by step.

Determinism is promised per machine; the rule-based and relative-attribute users use integer
ranks and NumPy draws only, so their digests are the same on every machine we know of. The
captioner's float32 decoding could in principle break a near-tie differently on another BLAS; if a
new machine disagrees only there, regenerate with ``python tests/test_rollout_checksum.py`` on the
old code on that machine.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialog_env.synthetic import default_catalog  # noqa: E402
from dialog_env.users import make_user  # noqa: E402
from dialog_env.users.captioner import CaptionerConfig, CaptionerUser, RelativeCaptioner  # noqa: E402
from dialog_env.vector import DialogRetrievalVectorEnv  # noqa: E402

NUM_DIALOGS = 50
NUM_STEPS = 200  # 50 x 200 = 10,000 dialog steps


def _captioner(decoding: str) -> CaptionerUser:
    vocabulary = make_user("rule").vocabulary
    torch.manual_seed(5)
    config = CaptionerConfig(
        image_dim=default_catalog().dim, vocab_size=len(vocabulary), embed_dim=16, hidden_dim=24, attention_dim=8
    )
    return CaptionerUser(model=RelativeCaptioner(config).eval(), vocabulary=vocabulary, decoding=decoding)


#: name -> keyword arguments of the vector env (users built lazily: the captioner needs torch).
CASES = {
    "rule": lambda: {"user": "rule"},
    "rule-noisy-improvement": lambda: {
        "user": "rule",
        "user_kwargs": {"vague_rate": 0.2, "irrelevant_rate": 0.1, "mistake_rate": 0.1},
        "reward_mode": "improvement",
    },
    "rule-success-same-step": lambda: {"user": "rule", "reward_mode": "success", "autoreset_mode": "SameStep"},
    "relative-attribute": lambda: {"user": "relative-attribute", "split": "test", "expose_target": True},
    "captioner-greedy": lambda: {"user": _captioner("greedy"), "max_turns": 5},
    "captioner-sample": lambda: {"user": _captioner("sample"), "split": "test"},
}

#: Taken on the landed main before the redesign of issue 13 (see the module docstring).
DIGESTS = {
    "rule": "8766a787257b4e18f2afdf15ccb6bb6cb956635be4afb80bb45487a3be0d428f",
    "rule-noisy-improvement": "d25871cb7f0dd3fe699d380f761557aac81a21f23cc26af75b68653064b69610",
    "rule-success-same-step": "19d2698ed5c918cab19e9c15c1821f975d96f3954a6070a30917c109855779a2",
    "relative-attribute": "c70eca1280206ae8fda73f8fcbdc24a48d282c05716e1ff6ebc81c7e378c1ddc",
    "captioner-greedy": "f1f137bc167e18c354664cd9a2ac94800cf38cf06ea590bfb37aef84ae3620d0",
    "captioner-sample": "38769b099bc476d1dd60b2faca0f40aca5d59d263bc970030c732394424cdbc7",
}


def _update(digest: hashlib._Hash, value: object) -> None:
    """Feed ``value`` (arrays, dicts, strings, numbers, None) into ``digest`` unambiguously."""
    if isinstance(value, dict):
        for key in sorted(value):
            digest.update(f"<{key}>".encode())
            _update(digest, value[key])
    elif isinstance(value, (tuple, list)):
        digest.update(f"seq{len(value)}".encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, np.ndarray) and value.dtype == object:
        digest.update(f"object{value.shape}".encode())
        for item in value.ravel():
            _update(digest, item)
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        _update(digest, value.item())
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def rollout_digest(case: str) -> str:
    """SHA-256 of a seeded 50-dialog x 200-step rollout of case ``case``."""
    envs = DialogRetrievalVectorEnv(num_envs=NUM_DIALOGS, **CASES[case]())
    actions = np.random.default_rng(2018).integers(envs.catalog.num_images, size=(NUM_STEPS, NUM_DIALOGS))
    digest = hashlib.sha256()
    _update(digest, envs.reset(seed=7))
    for step_actions in actions:
        _update(digest, envs.step(step_actions))
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_seeded_rollout_is_pinned(case):
    assert rollout_digest(case) == DIGESTS[case]


if __name__ == "__main__":
    for name in CASES:
        print(f'    "{name}": "{rollout_digest(name)}",')
