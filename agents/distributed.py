"""Data-parallel training of the paper's agent over several processes (``torch.distributed``).

``torchrun --nproc_per_node=K train_agent.py ...`` starts ``K`` processes; each joins the job
(:func:`join_process_group`: gloo on CPU, NCCL on GPU) and trains its :class:`DialogShard` of every
iteration: process ``r`` plays dialogs ``r B/K .. (r + 1) B/K - 1`` of the iteration's ``B``, the
same dialogs (targets, first images, shoppers' randomness) that one process playing all ``B``
would play in those rows, because every random draw of an iteration is made for the whole batch
and each process keeps its own rows (:meth:`DialogShard.rows`). The model is wrapped in
``DistributedDataParallel`` (:meth:`DialogShard.data_parallel`), whose gradient averaging, with
each process's loss scaled by :meth:`DialogShard.masked_mean`, is the gradient of the loss over
all ``B`` dialogs: the run follows the one-process run with the same global batch up to float
rounding (``tests/test_distributed.py``). Counts (active dialogs, the interaction budget, a stop
request) are summed over the processes, so every process takes the same decisions; only process 0
writes checkpoints, logs and metrics.

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) a process is the one shard
:data:`SINGLE_PROCESS`, and nothing here communicates.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
from torch import distributed, nn

from dialog_env.dynamics import InteractionBudget
from dialog_env.errors import ConfigurationError

__all__ = [
    "DialogShard",
    "GlobalBatchNorm1d",
    "SINGLE_PROCESS",
    "join_process_group",
    "leave_process_group",
    "end_process",
    "torchrun_world_size",
]


@dataclass(frozen=True)
class DialogShard:
    """This process's share of a data-parallel job, and the sums it takes with the other processes.

    Attributes:
        rank: this process's index, ``0 <= rank < world_size``; process 0 writes the run's files.
        world_size: processes in the job (1: a single process, nothing communicates).
        collective_device: where the tensors of collective operations live (``"cpu"`` for gloo,
            the process's GPU for NCCL).
    """

    rank: int = 0
    world_size: int = 1
    collective_device: str = "cpu"

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigurationError(f"a process rank must lie in 0..world_size-1, got rank {self.rank} of "
                                     f"{self.world_size}")  # fmt: skip

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's checkpoints, logs and metrics (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether other processes share the work."""
        return self.world_size > 1

    def local_batch(self, batch: int) -> int:
        """Dialogs this process plays of an iteration's ``batch``.

        Raises:
            ConfigurationError: ``batch`` is not a multiple of :attr:`world_size`.
        """
        if batch % self.world_size:
            raise ConfigurationError(
                f"--batch-size {batch} must be a multiple of the number of processes ({self.world_size}): each "
                "process plays an equal share of every iteration's dialogs"
            )
        return batch // self.world_size

    def rows(self, batch: int) -> slice:
        """This process's rows of an array laid out for the whole ``batch`` of an iteration."""
        local = self.local_batch(batch)
        return slice(self.rank * local, (self.rank + 1) * local)

    def sum(self, values: float | np.ndarray) -> np.ndarray:
        """``values`` summed over the processes (float64; exact for integers below 2^53).

        Every process must call it at the same point (a collective operation).

        Returns:
            A float64 array of the shape of ``values`` (``values`` itself, as float64, for one process).
        """
        array = np.asarray(values, dtype=np.float64)
        if not self.distributed:
            return array
        tensor = torch.from_numpy(array.copy()).to(self.collective_device)
        distributed.all_reduce(tensor, op=distributed.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def mean(self, value: float) -> float:
        """A per-process figure (e.g. an iteration's loss term) averaged over the processes."""
        return float(self.sum(value)) / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether any process says ``flag`` (e.g. a stop request seen by one of them)."""
        return bool(self.sum(float(bool(flag))) > 0)

    def all(self, flag: bool) -> bool:
        """Whether every process says ``flag`` (e.g. that its set-up succeeded)."""
        return bool(self.sum(float(bool(flag))) == self.world_size)

    @contextlib.contextmanager
    def agreed_start(self) -> Iterator[None]:
        """Set-up that every process must pass: if one process's body raises, all processes stop.

        The process whose body raised re-raises its own error; the others raise a
        :class:`~dialog_env.errors.ConfigurationError` that points at it, instead of waiting forever
        in the job's next collective operation. Nothing is exchanged for one process.
        """
        try:
            yield
        except BaseException:
            if self.distributed:
                self.all(False)  # tell the others, then raise this process's own error
            raise
        if self.distributed and not self.all(True):
            raise ConfigurationError(
                f"another process of this {self.world_size}-process torchrun job failed to start (its error is in "
                f"the job's output); process {self.rank} stops too"
            )

    def total_budget(self, budget: InteractionBudget) -> InteractionBudget:
        """The interaction budget spent by all processes, each passing its own ``budget``."""
        dialog_turns, lookahead_calls = self.sum(np.array([budget.dialog_turns, budget.lookahead_calls]))
        return InteractionBudget(int(dialog_turns), int(lookahead_calls))

    def masked_mean(self, per_dialog: torch.Tensor, active: np.ndarray) -> torch.Tensor:
        """This process's term of the mean of per-dialog losses over the active dialogs of all processes.

        One process: the mean of ``per_dialog`` over its ``active`` dialogs (0 when none is). Several:
        the process's sum over its active dialogs divided by the active dialogs of all processes and
        multiplied by :attr:`world_size`, because ``DistributedDataParallel`` averages the processes'
        gradients: that average is then the gradient of the mean over every active dialog of the
        iteration, as one process with the whole batch computes it. The average of the terms over
        the processes (:meth:`mean`) is that mean's value.

        Args:
            per_dialog: ``(b,)`` float losses of this process's dialogs.
            active: ``(b,)`` bool, the dialogs still looking for their target.
        """
        # The mask is copied: autograd keeps it for the backward pass, and a tensor sharing memory
        # with ``active`` would silently change if the caller later updated ``active`` in place.
        mask = torch.tensor(active, dtype=per_dialog.dtype, device=per_dialog.device)
        count = int(self.sum(int(active.sum()))) if self.distributed else int(active.sum())
        return (per_dialog * mask).sum() * self.world_size / max(count, 1)

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped in ``DistributedDataParallel`` over the job's processes (itself for one).

        Build the wrapper after freezing what will not train (parameters that do not require
        gradients are left out of the averaging) and call it, not ``module``, for the forward passes
        whose gradients are averaged. The wrapper starts from process 0's weights. Batch
        normalisation must see the whole batch, as one process would: ``module``'s
        ``BatchNorm1d`` layers become :class:`GlobalBatchNorm1d` (in place, parameters kept).
        """
        if not self.distributed:
            return module
        for child in module.modules():
            if type(child) is nn.BatchNorm1d:
                # The same module with the same parameter and buffer objects (an optimizer over
                # them stays valid), its training statistics now taken over all processes.
                child.__class__ = GlobalBatchNorm1d
        device = next(module.parameters()).device
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False
        )


class _SumOverProcesses(torch.autograd.Function):
    """A tensor summed over the processes, differentiably: the gradient is summed over them too.

    Each process's tensor enters every process's sum, so the gradient of the job's total loss with
    respect to it is the sum of every process's gradient with respect to the sum.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = tensor.clone()
        distributed.all_reduce(total, op=distributed.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = gradient.clone()
        distributed.all_reduce(total, op=distributed.ReduceOp.SUM)
        return total


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are those of the batches of all processes together.

    In training mode the ``(b, C)`` input of each process is normalised with the mean and the
    (biased) variance over every process's rows, and the running statistics follow the whole
    batch, as one ``BatchNorm1d`` over the concatenated batch would (up to float rounding); the
    sums are differentiable (their gradient is summed over the processes too), so the gradient
    reaches every process's rows through the shared statistics. In evaluation mode it is a plain
    ``BatchNorm1d`` and communicates nothing (process 0 evaluates alone). What
    ``torch.nn.SyncBatchNorm`` does on GPUs, here also on CPU (gloo), where SyncBatchNorm refuses to run.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise ``(b, C)`` float ``input`` (every process calls it at the same point in training)."""
        if not self.training or not distributed.is_initialized():
            return super().forward(input)
        if input.dim() != 2:
            raise ConfigurationError(
                f"GlobalBatchNorm1d takes (batch, channels) inputs, got shape {tuple(input.shape)}"
            )
        rows = input.new_tensor([float(input.shape[0])])
        sums = _SumOverProcesses.apply(torch.cat([input.sum(dim=0), rows]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = input - mean
        variance = _SumOverProcesses.apply((centred * centred).sum(dim=0)) / count  # two passes, as BatchNorm1d
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = variance * count / max(float(count) - 1.0, 1.0)
                self.running_mean.mul_(1.0 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1.0 - momentum).add_(unbiased.detach(), alpha=momentum)
        normalised = centred * torch.rsqrt(variance + self.eps)
        return normalised * self.weight + self.bias if self.affine else normalised


#: The shard of a process that trains alone.
SINGLE_PROCESS = DialogShard()


def torchrun_world_size() -> int:
    """Processes of the ``torchrun`` job this process was started in (1 outside ``torchrun``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigurationError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def join_process_group(device: torch.device) -> tuple[DialogShard, torch.device]:
    """Join the ``torchrun`` job this process belongs to; outside one, the single process.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this starts ``torch.distributed`` from the variables
    torchrun sets (``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with the gloo backend
    on CPU and NCCL on CUDA, where each process takes GPU ``LOCAL_RANK`` of its machine.

    Args:
        device: the device asked for (``--device``, resolved).

    Returns:
        ``(shard, device)``: this process's shard, and the device it trains on.

    Raises:
        ConfigurationError: a variable torchrun sets is missing, or a CUDA job has more processes
            on a machine than the machine has GPUs.
    """
    world_size = torchrun_world_size()
    if world_size <= 1:
        return SINGLE_PROCESS, device
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigurationError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: start several processes with torchrun "
            "(torchrun --nproc_per_node=2 train_agent.py ...)"
        )
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigurationError(
                f"process {rank} is number {local_rank} on its machine, which has {torch.cuda.device_count()} "
                "GPU(s): start at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not distributed.is_initialized():
        distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DialogShard(rank, world_size, str(device) if device.type == "cuda" else "cpu"), device


def leave_process_group() -> None:
    """End this process's part in the job (nothing outside one)."""
    if distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def end_process(status: int | None) -> NoReturn:
    """End this process with exit ``status``; a process of a torchrun job skips the interpreter's teardown.

    A process of a two-process gloo job whose work is done (its files written and closed, its
    process group destroyed) sometimes aborts *after* its main function has returned, in the C++
    teardown of the interpreter ("terminate called without an active exception", SIGABRT): about
    1 run in 10 of ``tests/distributed_worker.py`` on 2 AMD EPYC cores with torch 2.13, a barrier
    before :func:`leave_process_group` does not prevent it, and torchrun then fails the whole job.
    So a process of a job flushes its standard streams and leaves with ``os._exit``, which runs no
    ``atexit`` handler: call this last, once everything is closed. A single process simply
    raises ``SystemExit(status)``.
    """
    if torchrun_world_size() <= 1:
        raise SystemExit(status)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0 if status is None else int(status))
