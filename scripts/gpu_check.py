"""The Python half of scripts/gpu_check.sh: on a random backbone of a real model's shape (random weights, so nothing
has to be downloaded), a few steps of each training stage with the backbone in bfloat16 and the value module in
float32, then cached guided decoding against full recomputation in bfloat16 and, on a float32 copy of the same
weights, in float32 (svgt.benchmark.exactness states the tolerances). Writes one JSON file; exit status 1 if a check
failed.

    python scripts/gpu_check.py --config llama-3.2-1b --device cuda --out runs/gpu-check/check.json
    python scripts/gpu_check.py --config tiny-llama --device cpu --out /tmp/check.json   # dry run, seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from svgt.backbone import wrap_backbone
from svgt.benchmark.exactness import recompute_gap
from svgt.benchmark.measure import synchronize
from svgt.benchmark.models import prompt_batch, random_backbone
from svgt.benchmark.training import synthetic_pairs
from svgt.config import GenerationConfig, TrainConfig, ValueModuleConfig
from svgt.module import ValueModule
from svgt.prompts import left_pad
from svgt.training.activations import cached_states
from svgt.training.loop import run_loop
from svgt.training.stages import Stage3Batcher, StateData, stage1_spec, stage2_spec, stage3_spec


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def _checksum(model: torch.nn.Module) -> torch.Tensor:
    """One float64 sum per parameter: any change to a frozen backbone weight shows."""
    return torch.stack([p.detach().double().sum() for p in model.parameters()])


def train_steps(backbone: Any, device: str, items: int, prompt_len: int, response_len: int) -> dict[str, Any]:
    """Stages 1-3 for a few steps each, through the real loop and stage specs, on synthetic pairs (labels
    alternate: only finiteness, learning and dtypes are checked here, not what is learnt)."""
    torch.manual_seed(0)
    module = ValueModule(ValueModuleConfig.for_backbone(backbone.hidden_size, backbone.num_layers)).to(device)
    layer = module.config.extract_layer
    before = _checksum(backbone.model)
    pairs = synthetic_pairs(backbone, items, prompt_len, response_len)
    labels = torch.tensor([i % 2 for i in range(items)])
    cfg = TrainConfig(stage1_epochs=1, stage2_epochs=1, stage3_epochs=1, stage1_batch=8, stage2_batch=8,
                      stage3_batch=4)
    out: dict[str, Any] = {"items": items, "prompt_len": prompt_len, "response_len": response_len,
                           "extract_layer": layer, "stages": {}}
    with tempfile.TemporaryDirectory(prefix="svgt-gpu-check-") as root:
        synchronize(device)
        start = time.perf_counter()
        states = cached_states(backbone, layer, pairs, root=Path(root), desc="activations")
        synchronize(device)
        out["activations_s"] = round(time.perf_counter() - start, 3)
    data = StateData(states, labels)
    held = torch.arange(4)
    train_idx = torch.arange(4, min(items, 4 + 3 * cfg.stage3_batch))
    specs = {"stage1": stage1_spec(module, data, data, cfg), "stage2": stage2_spec(module, data, data, cfg),
             "stage3": stage3_spec(Stage3Batcher(backbone, module, pairs, cfg), held, train_idx, cfg)}
    for name, spec in specs.items():
        trained = [p for g in spec.param_groups for p in g["params"]]
        first = [p.detach().clone() for p in trained]
        synchronize(device)
        start = time.perf_counter()
        history = run_loop(module, spec, progress=False)
        synchronize(device)
        seconds = time.perf_counter() - start
        steps = {"stage1": math.ceil(items / cfg.stage1_batch), "stage2": math.ceil(items / cfg.stage2_batch),
                 "stage3": math.ceil(len(train_idx) / cfg.stage3_batch)}[name]
        record = history[-1]
        out["stages"][name] = {
            "steps": steps, "seconds": round(seconds, 3), "record": record,
            "finite": all(math.isfinite(v) for v in record.values()),
            "learnt": any(not torch.equal(a, b) for a, b in zip(first, trained)),
        }
    out["module_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()})
    out["backbone_unchanged"] = bool(torch.equal(before, _checksum(backbone.model)))
    out["peak_gib"] = _peak_gib(device)
    out["ok"] = (out["backbone_unchanged"] and out["module_dtypes"] == ["float32"]
                 and all(s["finite"] and s["learnt"] for s in out["stages"].values()))
    return out


def decode_checks(backbone: Any, device: str, new_tokens: int) -> dict[str, Any]:
    """Cached decoding against recomputation on two left-padded prompts, without refresh and with exact refresh
    every 4 tokens, in the backbone's dtype and on a float32 copy of the same weights."""
    torch.manual_seed(0)
    module = ValueModule(ValueModuleConfig.for_backbone(backbone.hidden_size, backbone.num_layers,
                                                        gate_init=0.5)).to(device).eval()
    ids, _ = prompt_batch(backbone, 2, 48)
    ids, mask = left_pad([ids[0].tolist(), ids[1, :30].tolist()], 0, device)
    # The same weights, each exactly, in float32: the reference for what bfloat16 itself costs.
    float32 = wrap_backbone(copy.deepcopy(backbone.model).float(), backbone.tokenizer, backbone.name)
    out: dict[str, Any] = {"prompt_lengths": [48, 30], "new_tokens": new_tokens, "runs": []}
    for bb in (backbone, float32):
        for refresh in (dict(refresh_every=0), dict(refresh_every=4, refresh_mode="exact", momentum=0.5)):
            start = time.perf_counter()
            gap = recompute_gap(bb, module, ids, mask, GenerationConfig(max_new_tokens=new_tokens, **refresh))
            gap.update(refresh=refresh, seconds=round(time.perf_counter() - start, 3))
            out["runs"].append(gap)
    del float32
    out["ok"] = all(r["ok"] and r["visible"] for r in out["runs"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="llama-3.2-1b", help="a svgt.benchmark.RANDOM_CONFIGS name")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--items", type=int, default=64, help="synthetic pairs for stages 1-2")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--response-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16, help="decoded tokens per exactness run")
    parser.add_argument("--out", help="the JSON file to write")
    parser.add_argument("--report", metavar="JSON", help="print the report of a check.json written before, and exit")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    if not args.out:
        parser.error("--out is required")
    start = time.perf_counter()
    backbone = random_backbone(args.config, args.device, getattr(torch, args.dtype))
    result: dict[str, Any] = {
        "config": args.config, "device": args.device, "dtype": args.dtype, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "parameters": sum(p.numel() for p in backbone.model.parameters()),
        "build_s": round(time.perf_counter() - start, 2),
    }
    result["train"] = train_steps(backbone, args.device, args.items, args.prompt_len, args.response_len)
    result["decode"] = decode_checks(backbone, args.device, args.new_tokens)
    result["ok"] = result["train"]["ok"] and result["decode"]["ok"]
    result["total_s"] = round(time.perf_counter() - start, 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("\n".join(report(result)), flush=True)
    return 0 if result["ok"] else 1


def report(result: dict[str, Any]) -> list[str]:
    """The check in a few lines (printed, and put into summary.md by gpu_check.sh)."""
    t = result["train"]
    lines = [f"{result['config']} ({result['parameters'] / 1e9:.2f}B parameters) on {result['gpu'] or result['device']}"
             f", backbone {result['dtype']}, torch {result['torch']}; {result['total_s']}s in all",
             f"train: {'ok' if t['ok'] else 'FAILED'} (activations of {t['items']} pairs in {t['activations_s']}s; "
             f"module {', '.join(t['module_dtypes'])}; backbone unchanged: {t['backbone_unchanged']}; peak "
             f"{t['peak_gib']} GiB)"]
    for name, r in t["stages"].items():
        loss = r["record"].get("loss", float("nan"))
        lines.append(f"  {name}: {r['steps']} steps in {r['seconds']}s, loss {loss:.4f}, finite {r['finite']}, "
                     f"learnt {r['learnt']}")
    lines.append(f"decode: {'ok' if result['decode']['ok'] else 'FAILED'} (cached vs recomputed logits, "
                 f"{result['decode']['new_tokens']} tokens, prompts of {result['decode']['prompt_lengths']} tokens)")
    for r in result["decode"]["runs"]:
        lines.append(f"  {r['dtype']}, refresh every {r['refresh']['refresh_every']}: max |gap| {r['max_abs_gap']:.2e} "
                     f"({r['relative_gap']:.2e} of the largest logit {r['max_abs_logit']:.2f}; zeroing the bridge "
                     f"moves them {r['bridge_effect']:.2e}), greedy agreement {r['greedy_agreement']:.0%}, bound "
                     f"{r['tolerance']:g} {r['tolerance_kind']}: {'ok' if r['ok'] and r['visible'] else 'FAILED'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
