"""Data parallelism for the LLM trainer, through accelerate (no process-group code of our own).

    torchrun --nproc_per_node 2 -m banditlab llm train ...          # or: accelerate launch -m banditlab llm train
    (`banditlab` also works as the module: python -m banditlab)

Each process takes a contiguous block of the step's prompts (whole groups, so group baselines stay exact), generates
and grades its own completions, and computes its loss with the whole batch's denominators (`batch_totals`, summed
across processes); the LoRA gradients are then summed, so every process takes the same optimizer step as one process
holding the whole batch. Metrics are computed from per-row statistics gathered from every process. One process (the
main one) writes config.json, metrics.jsonl and checkpoints; a checkpoint resumes on any number of processes.
Without WORLD_SIZE > 1 in the environment nothing here imports accelerate.
"""

from __future__ import annotations

import os

import numpy as np
import torch


class Dist:
    """rank / world of this process, and the collectives the trainer needs (sum, gradient sum, gather, barrier)."""

    def __init__(self, cpu: bool = True):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = self.local_rank = 0
        self.state = None
        if self.world > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=cpu)
            self.rank, self.local_rank = self.state.process_index, self.state.local_process_index
            self.world = self.state.num_processes
            import atexit

            atexit.register(_shutdown)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def block(self, items: list) -> list:
        """This process's contiguous share of `items` (the whole list in one process)."""
        if self.world == 1:
            return list(items)
        return [items[i] for i in np.array_split(np.arange(len(items)), self.world)[self.rank]]

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        from accelerate.utils import reduce

        return reduce(t, reduction="sum")

    def sum_grads(self, params: list) -> None:
        """Replace each parameter's gradient by its sum over the processes (one flat all-reduce; a parameter
        without a gradient counts as zeros), so every process holds the gradient of the whole batch's loss."""
        if self.world == 1:
            return
        flat = self.sum(torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1)
                                   for q in params]))
        for q in params:
            q.grad, flat = flat[: q.numel()].view_as(q).clone(), flat[q.numel():]

    def gather_rows(self, rows: list) -> list:
        """Concatenate every process's list, in rank order."""
        if self.world == 1:
            return rows
        from accelerate.utils import gather_object

        return gather_object(rows)

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


_LAST_BARRIER: list = []


def _shutdown() -> None:
    """Wait for every process, then tear the process group down before the interpreter does.

    The barrier's work object is kept, so that its last reference is dropped by this thread and not by gloo's
    worker thread. That work holds the last (weak) references to the collectives before it, whose tensors were
    made in Python; freeing them takes the GIL, and a worker thread that asks for the GIL while the interpreter
    is finalizing aborts the process ("terminate called without an active exception", exit code -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            work = dist.barrier(async_op=True)
            _LAST_BARRIER.append(work)
            work.wait()
        finally:
            dist.destroy_process_group()
