"""One code path for a single process and torchrun DDP: rank helpers, init, reductions."""

from __future__ import annotations

import atexit
import faulthandler
import os
import sys
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist

from mimscale.errors import ConfigError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    faulthandler.enable()  # a rank that aborts in C++ (SIGABRT) prints where each of its threads was
    dist.init_process_group(backend=backend)
    # Leave the group before the interpreter exits: a rank that exits with gloo's threads still running can
    # abort in C++ ("terminate called without an active exception", SIGABRT), failing a finished run.
    atexit.register(cleanup)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world_size()
    return t


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def agreed_signal(signum: int, device: torch.device) -> int:
    """The largest signal number any rank has received (0: none), the same on every rank, so that all ranks
    stop at the same step (a rank stopping alone would leave the others waiting in a collective)."""
    if not is_distributed():
        return signum
    t = torch.tensor([signum], dtype=torch.int64, device=device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap(model: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` in DistributedDataParallel under torchrun; itself in a single process."""
    if world_size() == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                     find_unused_parameters=find_unused_parameters)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group together: a rank that closes its connections while another still finishes
    its last collective can make gloo's background thread abort the other (SIGABRT, seen under load at the
    end of finished runs). A barrier first (gloo's bounded one, so a rank that died cannot hang the rest)."""
    if not is_distributed():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=60))
        else:
            dist.barrier()
    except Exception:  # noqa: BLE001 - a peer already gone: nothing left to wait for
        pass
    dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``. A torchrun rank leaves its process group, flushes its output and ends
    without interpreter finalization: the DDP reducer and gloo's backend outlive ``destroy_process_group`` and
    are torn down there, where a rank of a finished run could still abort (SIGABRT, "terminate called without
    an active exception", seen in CI at the end of a resumed 2-rank run). Every file is written by then."""
    if not is_distributed():
        sys.exit(code)
    cleanup()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(code)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank())
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but this machine has no CUDA device; use device=cpu or auto")
        if dev.index is None:
            dev = torch.device("cuda", local_rank())
        elif dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev
