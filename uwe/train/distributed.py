"""Joining a ``torchrun`` process group (``WORLD_SIZE > 1``): gloo on CPU, nccl on CUDA.

Distributed (``torchrun``, ``WORLD_SIZE > 1``): gloo on CPU / nccl on CUDA, the encoder wrapped
in DistributedDataParallel, sampler seed ``seed + rank``; token embeddings are all-gathered
with gradient so each graph's in-batch negatives span the global batch, and the positive mask
is rebuilt from the full graph for the gathered node ids (the gathering:
:mod:`uwe.train.step`). Only rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    created: bool = False  # this call created the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; CUDA -> ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        # rank 0 validates while the others wait in a collective: allow long validations
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=2))
    return DistInfo(dist.get_rank(), dist.get_world_size(), created), device
