"""Run by ``tests/test_distributed.py``, alone or under torchrun: a few SGD iterations of both stages.

    python tests/distributed_worker.py OUT.npz
    torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py OUT.npz

Trains the paper's dialog manager on a small synthetic catalogue with a global batch of 8 dialogs
(each process its share, :mod:`agents.distributed`): 2 stage-1 iterations, then 1 stage-2
iteration, with plain SGD, so that the weights show the averaged gradients themselves (Adam would
turn rounding noise in near-zero gradients into full steps). Process 0 writes ``OUT.npz``: the
final ``state_dict`` (one array per key) and the per-iteration losses (``_losses``) and look-ahead
gains (``_gains``).
"""

from __future__ import annotations

import copy
import sys

import gymnasium as gym
import numpy as np
import torch

from agents.dialog_manager import DialogManager, DialogManagerConfig, pretrain
from agents.distributed import end_process, join_process_group, leave_process_group
from agents.policy_improvement import improve

GLOBAL_BATCH = 8
CATALOG = {"num_train": 120, "num_test": 40, "dim": 16, "seed": 5}


def main(out: str) -> None:
    shard, device = join_process_group(torch.device("cpu"))
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        envs = gym.make_vec(
            "DialogRetrieval-v0", num_envs=shard.local_batch(GLOBAL_BATCH), split="train", max_turns=3,
            expose_target=True, vectorization_mode="vector_entry_point", catalog=CATALOG,
        )  # fmt: skip
        train_env = envs.unwrapped
        config = DialogManagerConfig(image_dim=train_env.catalog.dim, vocab_size=len(train_env.vocabulary))
        model = DialogManager(config).to(device)
        losses, gains = [], []
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        pretrain(model, train_env, 2, optimizer, seed=3, shard=shard,
                 on_iteration=lambda i, metrics: losses.append(metrics["loss"]))  # fmt: skip
        base = copy.deepcopy(model)
        for parameter in model.image_encoder.parameters():
            parameter.requires_grad_(False)
        trained = [p for name, p in model.named_parameters() if not name.startswith("image_encoder.")]

        def record(i: int, metrics: dict[str, float]) -> None:
            losses.append(metrics["loss"])
            gains.append(metrics["lookahead_gain"])

        improve(model, base, train_env, 1, torch.optim.SGD(trained, lr=0.05), seed=3, shard=shard, on_iteration=record)
        if shard.is_main:
            weights = {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
            np.savez(out, _losses=np.array(losses), _gains=np.array(gains), **weights)
        envs.close()
    finally:
        leave_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    end_process(0)
