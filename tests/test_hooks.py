import pytest
import torch
from conftest import make_module
from tiny import FAMILIES, tiny_backbone

from svgt.hooks import BackboneHooks, BridgeCache, bridged_forward
from svgt.prompts import left_pad


def _layer_outputs(backbone, hooks, ids, mask, bridge, response):
    outs = []
    handles = [layer.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
               for layer in backbone.layers]
    try:
        with torch.no_grad():
            bridged_forward(backbone.model, hooks, ids, mask, bridge, response)
    finally:
        for h in handles:
            h.remove()
    return outs


@pytest.mark.parametrize("family", FAMILIES)
def test_bridge_is_invisible_below_insert_layer(family):
    backbone = tiny_backbone(family)
    module = make_module(backbone, extract_layer=2)
    ids, mask = left_pad([[2, 5, 6, 7, 8], [2, 9, 10]], 0)
    response = torch.tensor([[11, 12, 13], [14, 15, 16]])
    b1 = torch.randn(2, 3, backbone.hidden_size)
    b2 = torch.randn(2, 3, backbone.hidden_size) * 3
    c = module.config
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks:
        o1 = _layer_outputs(backbone, hooks, ids, mask, b1, response)
        o2 = _layer_outputs(backbone, hooks, ids, mask, b2, response)
    m = ids.shape[1]
    rows = list(range(m)) + list(range(m + 3, m + 6))  # prompt and response positions
    for i in range(c.insert_layer):
        assert torch.equal(o1[i][:, rows], o2[i][:, rows]), f"layer {i} below insert saw the bridge"
    # From the insert layer up, response positions do see the bridge.
    assert not torch.allclose(o1[c.insert_layer][:, m + 3 :], o2[c.insert_layer][:, m + 3 :])
    # And the prompt never does (causality).
    assert torch.equal(o1[-1][:, :m], o2[-1][:, :m])


def test_hooks_removed_on_exit_and_on_error(llama):
    module = make_module(llama)
    c = module.config

    def count():
        return sum(len(l._forward_pre_hooks) + len(l._forward_hooks) for l in llama.layers)

    before = count()
    with BackboneHooks(llama.layers, c.insert_layer, c.extract_layer, "sdpa"):
        assert count() > before
    assert count() == before
    with pytest.raises(RuntimeError):
        with BackboneHooks(llama.layers, c.insert_layer, c.extract_layer, "sdpa"):
            raise RuntimeError("boom")
    assert count() == before


def test_backbone_frozen_after_training_steps(llama):
    module = make_module(llama).train()
    before = {k: v.clone() for k, v in llama.model.state_dict().items()}
    module_before = {k: v.clone() for k, v in module.state_dict().items()}
    ids, mask = left_pad([[2, 5, 6, 7, 8], [2, 9, 10]], 0)
    response = torch.tensor([[11, 12, 13], [14, 15, 16]])
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    c = module.config
    with BackboneHooks(llama.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks:
        for _ in range(3):
            bridged_forward(llama.model, hooks, ids, mask, None, response[:, :0])
            states = hooks.captured
            out = module.make_bridge(states[:, -1], states, mask.bool())
            logits = bridged_forward(llama.model, hooks, ids, mask, out.tokens, response).logits
            loss = torch.nn.functional.cross_entropy(logits[:, -4:-1].reshape(-1, logits.shape[-1]), response.reshape(-1))
            loss = loss + module.score(hooks.captured[:, -3:], states, mask.bool()).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert all(torch.equal(before[k], v) for k, v in llama.model.state_dict().items())
    assert all(not p.requires_grad for p in llama.model.parameters())
    changed = [k for k, v in module.state_dict().items() if not torch.equal(module_before[k], v)]
    assert any(k.startswith("bridge.") for k in changed) and any(k.startswith("value_space.") for k in changed)


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_bridged_forward_can_keep_only_the_last_logits(family):
    backbone = tiny_backbone(family)
    c = make_module(backbone).config
    ids, mask = left_pad([[2, 5, 6, 7, 8], [2, 9, 10]], 0)
    bridge, response = torch.randn(2, 3, backbone.hidden_size), torch.tensor([[11, 12], [14, 15]])
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks, torch.no_grad():
        full = bridged_forward(backbone.model, hooks, ids, mask, bridge, response).logits
        last = bridged_forward(backbone.model, hooks, ids, mask, bridge, response, logits_to_keep=1).logits
    assert last.shape[1] == 1 and torch.allclose(last[:, -1], full[:, -1], atol=1e-5)


def test_bridge_cache_writes_the_bridge_over_its_old_columns_from_the_given_layer_up():
    """While `overwrite` is set, layers from its first layer take the first entries in place at its columns and
    append only the rest; layers below, and every layer once it is unset, append what they are given."""
    cache = BridgeCache()
    old = torch.arange(2 * 6 * 3, dtype=torch.float32).view(1, 2, 6, 3)
    for layer in range(3):
        cache.update(old.clone(), old.clone() + 100, layer)
    new = -torch.ones(1, 2, 4, 3)  # 3 bridge rows, then the token's
    new[:, :, -1] = -2
    cache.overwrite = (1, slice(2, 5))
    for layer in range(3):
        keys, values = cache.update(new, new - 100, layer)
        assert keys is cache.layers[layer].keys and values is cache.layers[layer].values
    cache.overwrite = None
    assert cache.layers[0].keys.shape[2] == 10 and torch.equal(cache.layers[0].keys[:, :, 6:], new)
    for layer in (1, 2):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values
        assert keys.shape[2] == 7
        assert torch.equal(keys[:, :, :2], old[:, :, :2]) and torch.equal(keys[:, :, 5], old[:, :, 5])
        assert torch.equal(keys[:, :, 2:5], new[:, :, :3]) and torch.equal(keys[:, :, 6], new[:, :, 3])
        assert torch.equal(values[:, :, 2:5], new[:, :, :3] - 100)
    cache.update(new, new, 2)
    assert cache.layers[2].keys.shape[2] == 11
