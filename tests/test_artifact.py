import json
import os

import pytest
import torch
from conftest import make_module
from tiny import tiny_backbone

from svgt import GenerationConfig, generate, load_pretrained, save_pretrained
from svgt.artifact import CONFIG_NAME, WEIGHTS_NAME, ArtifactError


def test_round_trip_gives_identical_outputs(tmp_path, llama):
    module = make_module(llama)
    save_pretrained(module, tmp_path / "vm", llama, data={"fingerprint": "abc"}, training={"stage": 3})
    assert sorted(os.listdir(tmp_path / "vm")) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    config = json.loads((tmp_path / "vm" / CONFIG_NAME).read_text())
    assert config["backbone"]["hidden_size"] == llama.hidden_size
    assert config["backbone"]["num_layers"] == llama.num_layers
    assert config["module"]["extract_layer"] == 2 and config["svgt_version"]
    assert set(config["saved_with"]) == {"python", "torch", "transformers"}
    assert config["saved_with"]["torch"] == torch.__version__
    assert config["data"] == {"fingerprint": "abc"}
    loaded = load_pretrained(tmp_path / "vm", llama)
    cfg = GenerationConfig(max_new_tokens=6, refresh_every=2, stop_at_eos=False)
    a = generate(llama, module, ["hello there"], cfg, keep_logits=True)
    b = generate(llama, loaded, ["hello there"], cfg, keep_logits=True)
    assert a.token_ids == b.token_ids
    assert all(torch.equal(x, y) for x, y in zip(a.step_logits, b.step_logits))


def test_weights_hold_only_the_value_module(tmp_path, llama):
    from safetensors.torch import load_file

    save_pretrained(make_module(llama), tmp_path, llama)
    names = load_file(str(tmp_path / WEIGHTS_NAME)).keys()
    assert names and all(n.startswith(("value_space.", "bridge.")) for n in names)


def test_mismatched_backbone_is_refused_naming_both(tmp_path, llama):
    save_pretrained(make_module(llama), tmp_path, llama)
    other = tiny_backbone("gpt2")
    other.model.config.n_embd = other.model.config.hidden_size  # same object; shape differs by layer count below
    import torch.nn as nn

    other.layers = nn.ModuleList(list(other.layers)[:3])
    with pytest.raises(ArtifactError, match="tiny-llama.*tiny-gpt2.*num_layers 4 vs 3"):
        load_pretrained(tmp_path, other)


def test_missing_and_malformed_artifacts(tmp_path, llama):
    with pytest.raises(ArtifactError, match="not an svgt artifact"):
        load_pretrained(tmp_path, llama)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="invalid JSON at line 1"):
        load_pretrained(tmp_path, llama)


def test_an_ensemble_round_trips_with_its_statistics(tmp_path, llama):
    from svgt.module import join_value_spaces
    from svgt.value_space import ValueEnsemble

    module = join_value_spaces(make_module(llama), [make_module(llama, seed=2).value_space], [[0.1, 1.5], [-2.0, 3.0]])
    save_pretrained(module, tmp_path / "vm", llama)
    loaded = load_pretrained(tmp_path / "vm", llama)
    assert isinstance(loaded.judge, ValueEnsemble) and loaded.config.score_stats == [[0.1, 1.5], [-2.0, 3.0]]
    cfg = GenerationConfig(max_new_tokens=6, refresh_every=2, stop_at_eos=False, gate_threshold=float("-inf"))
    a = generate(llama, module, ["hello there", "a longer prompt here"], cfg, keep_logits=True)
    b = generate(llama, loaded, ["hello there", "a longer prompt here"], cfg, keep_logits=True)
    assert a.token_ids == b.token_ids and [t.bridge_score for t in a.telemetry] == [t.bridge_score for t in b.telemetry]
