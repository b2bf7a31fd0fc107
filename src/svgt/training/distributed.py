"""Several processes, one training run: `accelerate launch -m svgt train ...` (docs/scaling.md).

Data parallel, as DDP does it: every process holds the whole frozen backbone and the whole value module. The
backbone's answers and the cached activations are split between processes by whole batches, so every batch is the
one a single process would have run and the cache files are the same files under the same keys. Stages 1-3 split
each global batch (the single-process batch) into one slice per process; each process's loss is its slice's share of
the global batch's loss, and the gradients are summed across processes before every optimizer step, so the step is
the single-process step on the same batch, up to the order float32 sums are taken in. Checkpoints and the artifact
are written by the main process only.

Why not `DistributedDataParallel` itself: it reduces gradients through hooks armed by the wrapped module's
`forward`, and the stages call the module's own methods (`score`, `make_bridge`, ...), never `forward`. Summing the
gradients in one all-reduce per step, as DDP's reducer does, is the same arithmetic without the wrapper.

Without a process group (a plain `svgt train`, any library call) every function here is the identity: process 0 of
1, no communication, and the training code runs exactly its single-process path.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Container, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """How many processes train together (1 when not launched by accelerate or torchrun)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    return dist.get_rank() if _active() else 0


def is_main() -> bool:
    """Whether this process writes files and logs (the only process of a single-process run)."""
    return rank() == 0


def launched() -> bool:
    """Whether a launcher (`accelerate launch`, torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(cpu: bool = False) -> torch.device | None:
    """Join the process group the launcher described in the environment, through accelerate's `PartialState`:
    NCCL between GPUs, gloo between CPU processes (`cpu`, ACCELERATE_USE_CPU, or no CUDA here). Returns this
    process's device (its own GPU, `cuda:LOCAL_RANK`, or the CPU), or None when not launched, leaving nothing
    initialised."""
    if not launched():
        return None
    from accelerate import PartialState

    asked = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    cpu = cpu or asked or not torch.cuda.is_available()
    device = PartialState(cpu=cpu).device
    return torch.device("cpu") if device.type == "cpu" else device  # accelerate says cpu:0; the CPU is one device


def shutdown() -> None:
    """Leave the process group (after the last collective), so the processes exit without a warning."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if _active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first, then the others: a block that fills a cache (a built-in backbone's
    one-time conversion) fills it once, and the others find it filled."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def from_main(value: T) -> T:
    """The main process's `value`, on every process: one decision (is the cache there?) for all of them."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def missing(keys: Sequence[str], cached: Container[str]) -> list[int]:
    """Where each key not in `cached` first occurs in `keys` (a cache's items to compute, each once), as the main
    process sees the cache: one decision for every process."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in cached:
            first.setdefault(key, i)
    return from_main(list(first.values()))


def my_batches(n: int) -> range:
    """The batches (of `n`, in the single-process order) this process runs: every `world_size()`-th one."""
    return range(rank(), n, world_size())


def gather_dicts(part: dict[Any, Any]) -> dict[Any, Any]:
    """Every process's `part` merged, on every process (small Python objects: answers, telemetry)."""
    if not _active():
        return dict(part)
    parts: list[dict[Any, Any] | None] = [None] * world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in (p or {}).items()}


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This process's contiguous slice of a global batch of item indices (slices differ in size by at most one;
    a batch smaller than the world leaves some processes an empty slice)."""
    if not _active():
        return idx
    return torch.tensor_split(idx, world_size())[rank()]


def share(value: torch.Tensor, part: int, whole: int) -> torch.Tensor:
    """`value` (a mean over `part` things of the global batch's `whole`) weighted as that slice's share of the
    global mean; the shares of all processes sum to the global mean. Untouched when the slice is the whole batch."""
    return value if part == whole else value * (part / whole)


def sum_values(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Per-key sums over processes of each process's share (of a loss, of a metric)."""
    if not _active():
        return values
    keys = sorted(values)
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(flat)
    summed = dict(zip(keys, flat.tolist()))
    return {k: summed[k] for k in values}


def sync_gradients(params: list[nn.Parameter], values: dict[str, float]) -> dict[str, float]:
    """Sum the gradients of `params` and the `values` (loss and metric shares) over processes, in one all-reduce.

    A parameter with no gradient on any process (unused by the loss) keeps none, as in a single process; one with a
    gradient somewhere gets the sum, zeros standing in where a process had none (an empty slice)."""
    if not _active():
        return values
    keys = sorted(values)
    device = params[0].device
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    vals = torch.tensor([values[k] for k in keys], dtype=torch.float32, device=device)
    flat = torch.cat(parts + [has, vals])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    for p, count in zip(params, flat[offset : offset + len(params)].tolist()):
        if count == 0:
            p.grad = None
    offset += len(params)
    summed = dict(zip(keys, flat[offset:].tolist()))
    return {k: summed[k] for k in values}  # in the caller's order, as metrics.json lists them


def broadcast_module(module: nn.Module) -> None:
    """Every process starts from the main process's weights, as DDP does when it wraps a module."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
