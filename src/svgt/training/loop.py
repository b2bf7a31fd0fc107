"""The one training loop every stage uses. Stages differ in data, trainable parameters, learning rates and loss.

Checkpoints are written atomically at the end of each epoch (module weights, optimizer moments, RNG state, history)
as safetensors + JSON, so `resume=True` continues an interrupted run to the same result as an uninterrupted one.

Under several processes (`svgt.training.distributed`) every process runs this loop on the same global batches; the
stage's loss takes this process's slice and returns its share, gradients and shares are summed across processes
before the step, and the main process alone writes checkpoints (every process reads them on resume).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from . import distributed

Batch = Any
LossFn = Callable[[Batch], tuple[torch.Tensor | None, dict[str, float]]]
"""This process's share of a global batch's loss and metrics (the whole of them in a single process); None for the
loss where this process's slice of the batch is empty (then every metric is 0)."""


@dataclass
class LoopSpec:
    name: str
    """Stage name; also the checkpoint's file stem."""
    param_groups: list[dict[str, Any]]
    """torch.optim param groups (`params`, `lr`); every other parameter of the module is frozen for the stage."""
    batches: Callable[[torch.Generator], Iterable[Batch]]
    """Yields one epoch of batches, shuffled with the generator it is given."""
    loss: LossFn
    epochs: int
    validate: Callable[[], dict[str, float]] | None = None
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _set_trainable(module: nn.Module, groups: list[dict[str, Any]]) -> None:
    keep = {id(p) for g in groups for p in g["params"]}
    for p in module.parameters():
        p.requires_grad_(id(p) in keep)


def _checkpoint_paths(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}.ckpt.safetensors", folder / f"{name}.ckpt.json"


def _save_checkpoint(folder: Path, name: str, module: nn.Module, opt: torch.optim.Optimizer, epoch: int,
                     history: list[dict[str, float]]) -> None:
    tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    state = opt.state_dict()
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = torch.get_rng_state()
    weights, meta = _checkpoint_paths(folder, name)
    for path, write in (
        (weights, lambda p: save_file(tensors, p)),
        (meta, lambda p: Path(p).write_text(json.dumps({"epoch": epoch, "history": history}))),
    ):
        tmp = path.with_name(path.name + ".tmp")
        write(str(tmp))
        os.replace(tmp, path)


def _load_checkpoint(folder: Path, name: str, module: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list]:
    weights, meta = _checkpoint_paths(folder, name)
    if not (weights.exists() and meta.exists()):
        return 0, []
    tensors = load_file(str(weights))
    module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")})
    state = opt.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name_ = key.split(".", 2)
            restored.setdefault(int(pid), {})[name_] = value
    state["state"] = restored
    opt.load_state_dict(state)
    torch.set_rng_state(tensors["rng"])
    info = json.loads(meta.read_text())
    return int(info["epoch"]), list(info["history"])


def _process_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1000 + epoch) * 1009 + rank + 1


def run_loop(module: nn.Module, spec: LoopSpec, checkpoint_dir: str | os.PathLike[str] | None = None,
             resume: bool = False, progress: bool = True,
             stop_after_epochs: int | None = None) -> list[dict[str, float]]:
    """Train `module` by `spec`; returns one record per epoch (mean train loss, metrics, validation).

    `stop_after_epochs` ends the call early, as an interruption would (tests use it to prove resume).
    """
    progress = progress and distributed.is_main()
    _set_trainable(module, spec.param_groups)
    opt = torch.optim.AdamW(spec.param_groups, weight_decay=spec.weight_decay)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start, history = 0, []
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if resume:
            start, history = _load_checkpoint(folder, spec.name, module, opt)
    if start == 0:
        torch.manual_seed(spec.seed)
    distributed.broadcast_module(module)
    params = [p for g in spec.param_groups for p in g["params"]]
    for epoch in range(start, spec.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        module.train()
        # The data order depends only on (seed, epoch), so a resumed run sees the same batches.
        gen = torch.Generator().manual_seed(spec.seed * 1000 + epoch)
        if distributed.world_size() > 1:
            # Dropout masks from a stream of their own per process and epoch: processes draw different masks for
            # their slices, and a resumed run draws the masks an uninterrupted one would have.
            torch.manual_seed(_process_seed(spec.seed, epoch, distributed.rank()))
        totals: dict[str, float] = {}
        steps = 0
        bar = tqdm(spec.batches(gen), desc=f"{spec.name} epoch {epoch + 1}/{spec.epochs}", disable=not progress,
                   leave=False)
        for batch in bar:
            loss, metrics = spec.loss(batch)
            opt.zero_grad(set_to_none=True)
            if loss is not None:
                loss.backward()
            values = distributed.sync_gradients(params, {"loss": 0.0 if loss is None else loss.item(), **metrics})
            if not math.isfinite(values["loss"]):
                raise FloatingPointError(f"{spec.name}: loss became {values['loss']} at epoch {epoch + 1}")
            if spec.grad_clip:
                nn.utils.clip_grad_norm_(params, spec.grad_clip)
            opt.step()
            steps += 1
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix(loss=f"{totals['loss'] / steps:.4f}")
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in totals.items()}}
        module.eval()
        if spec.validate is not None:
            with torch.no_grad():
                record.update({f"val_{k}": v for k, v in spec.validate().items()})
        history.append(record)
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
            tqdm.write(f"{spec.name} epoch {epoch + 1}/{spec.epochs}: {shown}", file=sys.stderr)
        if folder is not None:
            if distributed.is_main():
                _save_checkpoint(folder, spec.name, module, opt, epoch + 1, history)
            distributed.barrier()  # no process moves on (or resumes) before the checkpoint is whole
    module.eval()
    for p in module.parameters():
        p.requires_grad_(True)
    return history
