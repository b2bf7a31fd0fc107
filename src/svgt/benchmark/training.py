"""Training throughput: stage-3 steps per second, and what the activation cache saves stages 1-2."""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..backbone import Backbone
from ..config import TrainConfig
from ..module import ValueModule
from ..training.activations import EncodedPair, cached_states
from ..training.loop import run_loop
from ..training.stages import Stage3Batcher, stage3_spec
from .measure import synchronize
from .models import prompt_batch


def synthetic_pairs(backbone: Backbone, n: int, prompt_len: int, response_len: int) -> list[EncodedPair]:
    ids, _ = prompt_batch(backbone, n, prompt_len + response_len)
    rows = ids.tolist()
    return [EncodedPair(r[:prompt_len], r[prompt_len:]) for r in rows]


def stage3_throughput(backbone: Backbone, module: ValueModule, *, batch: int, prompt_len: int, response_len: int,
                      steps: int, device: str) -> dict[str, Any]:
    """Time `steps` stage-3 optimizer steps (loss: two bridged forwards; backward through the layers above the
    insert layer into the bridge; AdamW step) through the real training loop, after one warm-up step.
    A copy of the module trains, so the caller's module is left as it was."""
    module = copy.deepcopy(module)
    cfg = TrainConfig(stage3_batch=batch, stage3_epochs=1)
    examples = synthetic_pairs(backbone, batch * (steps + 1), prompt_len, response_len)
    batcher = Stage3Batcher(backbone, module, examples, cfg)
    empty = torch.zeros(0, dtype=torch.long)
    warm = torch.arange(batch)
    run_loop(module, stage3_spec(batcher, empty, warm, cfg), progress=False)
    timed = torch.arange(batch, batch * (steps + 1))
    synchronize(device)
    start = time.perf_counter()
    run_loop(module, stage3_spec(batcher, empty, timed, cfg), progress=False)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "batch": batch, "prompt_len": prompt_len, "response_len": response_len, "steps": steps,
        "seconds": seconds, "steps_per_s": steps / seconds, "examples_per_s": steps * batch / seconds,
    }


def activation_cache_speedup(backbone: Backbone, layer: int, *, items: int, prompt_len: int, response_len: int,
                             device: str, progress: bool = False) -> dict[str, Any]:
    """Stages 1-2 read only extract-layer states. The first training run computes them (backbone up to the layer)
    and writes the cache; later runs load it. Both timed on the same data, in a throw-away cache folder."""
    pairs = synthetic_pairs(backbone, items, prompt_len, response_len)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())  # its tqdm bar
    with tempfile.TemporaryDirectory(prefix="svgt-bench-acts-") as tmp, quiet:
        root = Path(tmp)
        synchronize(device)
        start = time.perf_counter()
        cached_states(backbone, layer, pairs, root=root, desc="bench activations")
        synchronize(device)
        compute = time.perf_counter() - start
        start = time.perf_counter()
        cached_states(backbone, layer, pairs, root=root)
        load = time.perf_counter() - start
    return {
        "items": items, "prompt_len": prompt_len, "response_len": response_len, "extract_layer": layer,
        "compute_and_write_s": compute, "load_s": load, "speedup": compute / load if load > 0 else None,
    }


def training_throughput(backbone: Backbone, module: ValueModule, device: str, quick: bool,
                        progress: bool = False) -> dict[str, Any]:
    if quick:
        s3 = dict(batch=2, prompt_len=32, response_len=16, steps=2)
        acts = dict(items=16, prompt_len=64, response_len=32)
    else:
        s3 = dict(batch=TrainConfig().stage3_batch, prompt_len=128, response_len=48, steps=3)
        acts = dict(items=64, prompt_len=128, response_len=48)
    return {
        "stage3": stage3_throughput(backbone, module, device=device, **s3),
        "activation_cache": activation_cache_speedup(backbone, module.config.extract_layer, device=device,
                                                   progress=progress, **acts),
    }
