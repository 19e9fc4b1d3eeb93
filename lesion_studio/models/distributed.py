"""DDP set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str) -> DistInfo:
    """Join the process group torchrun describes; a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def run_on_main(info: DistInfo, action: Callable[[], T]) -> T | None:
    """Run `action` on rank 0 only; when it fails, every rank raises its error.

    Rank 0 then tells the other ranks (a broadcast, which also holds them until rank 0 is done)
    whether it succeeded: a failure to lock or claim the output folder is raised on every rank
    with the same type and message, so no rank goes on to write into a folder rank 0 does not
    hold, or waits forever in a collective rank 0 never reaches. Returns `action()` on rank 0
    and None on the other ranks. The error raised on every rank has `on_every_rank = True`
    (see `report_on_every_rank`).
    """
    result: T | None = None
    error: Exception | None = None
    if info.is_main:
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
    if info.enabled and dist.is_initialized():
        message = [None if error is None else _portable(error)]
        dist.broadcast_object_list(message, src=0)
        if message[0] is not None:
            error = error if info.is_main else message[0]
            error.on_every_rank = True
    if error is not None:
        raise error
    return result


def report_on_every_rank(error: BaseException) -> None:
    """Call after printing an error `run_on_main` raised: waits until every rank has printed it.

    torchrun stops the remaining ranks as soon as one exits with an error; without this wait
    rank 0 could exit, and a slower rank be stopped, before that rank has said why it stops.
    Does nothing for other errors (a barrier that only some ranks reach would never return).
    """
    if getattr(error, "on_every_rank", False) and dist.is_available() and dist.is_initialized():
        dist.barrier()


def _portable(error: Exception) -> Exception:
    """`error` itself when it survives pickling (lesion-studio errors do), else a RuntimeError
    with its type and message."""
    try:
        copy = pickle.loads(pickle.dumps(error))
        if type(copy) is type(error) and str(copy) == str(error):
            return error
    except Exception:  # noqa: BLE001 - an exception type that does not pickle
        pass
    return RuntimeError(f"rank 0: {type(error).__name__}: {error}")


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when `flag` is True on any rank (cancel reaches all ranks together)."""
    if not info.enabled:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
