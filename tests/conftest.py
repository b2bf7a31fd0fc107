import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny import tiny_backbone  # noqa: E402

from svgt import ValueModule, ValueModuleConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Converted backbones are expensive; keep the user's cache unless a test sets SVGT_CACHE itself.
    torch.set_num_threads(2)
    yield


def make_module(backbone, seed: int = 1, **overrides) -> ValueModule:
    kwargs = dict(extract_layer=2, num_bridge_tokens=3, value_dim=16, num_heads=2, gate_init=0.5, dropout=0.0)
    kwargs.update(overrides)
    cfg = ValueModuleConfig(hidden_size=backbone.hidden_size, num_layers=backbone.num_layers, **kwargs)
    torch.manual_seed(seed)
    return ValueModule(cfg).eval()


@pytest.fixture
def llama():
    return tiny_backbone("llama")


@pytest.fixture
def svgt_device() -> torch.device:
    """Where device-aware tests (tests/test_device.py) run: $SVGT_TEST_DEVICE, the CPU by default;
    scripts/gpu_check.sh sets cuda. A device this machine lacks skips the test."""
    device = torch.device(os.environ.get("SVGT_TEST_DEVICE", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"SVGT_TEST_DEVICE={device}: no CUDA GPU here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        pytest.skip(f"SVGT_TEST_DEVICE={device}: no MPS here")
    return device


def stage3_step_against_full_forward(batcher, idx) -> tuple[float, float]:
    """Stage 3's loss on items `idx` (its default prompt-prefix, target-logits-only step) against the same batcher's
    reference step (`prefix_cache=False`: one full forward over `[prompt ; bridge ; target]`, every position's
    logits): (relative difference of the losses, largest relative difference of a bridge parameter's gradient)."""
    module = batcher.module
    results = []
    for prefix_cache in (True, False):
        batcher.prefix_cache = prefix_cache
        module.zero_grad()
        loss = batcher.loss(idx)[0]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in module.bridge.parameters() if p.grad is not None]))
    batcher.prefix_cache = True
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast_grads and len(fast_grads) == len(ref_grads), "the bridge gets no gradient"
    grad = max(float((a - b).norm() / b.norm().clamp_min(1e-12)) for a, b in zip(fast_grads, ref_grads))
    return float((fast - ref).abs() / ref.abs()), grad


def with_conditional_path(module: ValueModule, seed: int = 3) -> ValueModule:
    """`module` with a cross-attention that counts: its out projection starts at zero (a no-op before stage 2), so
    a test of what the decoder does with the prompt's side of the value space needs it set."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.value_space.cross_attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module


def load_script(relative: str):
    """A script or benchmark of this repository (not a package module), imported from its file, e.g.
    `load_script("benchmarks/step_parts.py")`."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
