import pytest
import torch

from svgt import ValueModule, ValueModuleConfig
from svgt.config import ConfigError


def _module(**kw):
    torch.manual_seed(0)
    return ValueModule(ValueModuleConfig(hidden_size=16, num_layers=4, extract_layer=2, value_dim=8, num_heads=2,
                                         dropout=0.0, **kw)).eval()


def test_correction_works_inside_inference_mode_and_only_touches_discriminator():
    m = _module()
    z = torch.randn(5, 8)
    with torch.inference_mode():
        dz, s = m.value_space.correction(z)
    assert dz.shape == (5, 8) and s.shape == (5,)
    assert all(p.grad is None for p in m.parameters())


def test_newton_step_is_zero_when_safe_and_reaches_zero_for_linear_discriminator():
    m = _module()
    # A linear D makes the Newton step exact: s(z + Δz) == 0 for unsafe rows.
    m.value_space.discriminator = torch.nn.Linear(8, 1)
    z = torch.randn(64, 8)
    dz, s = m.value_space.correction(z)
    safe = s <= 0
    assert safe.any() and (~safe).any()
    assert torch.all(dz[safe] == 0)
    after = m.value_space.score(z + dz)
    assert torch.allclose(after[~safe], torch.zeros_like(after[~safe]), atol=1e-5)


def test_margin_moves_the_newton_target_to_minus_margin():
    m = _module(margin=1.5)
    m.value_space.discriminator = torch.nn.Linear(8, 1)
    z = torch.randn(64, 8)
    dz, s = m.value_space.correction(z)
    far = s <= -1.5  # already past the target: untouched
    assert far.any() and (~far).any() and (s[~far] < 0).any()  # some rows below zero are corrected too
    assert torch.all(dz[far] == 0)
    after = m.value_space.score(z + dz)
    assert torch.allclose(after[~far], torch.full_like(after[~far], -1.5), atol=1e-5)


def test_negative_margin_is_refused():
    with pytest.raises(ConfigError, match="margin"):
        _module(margin=-1.0)


def test_gradient_correction_is_minus_gradient():
    m = _module(correction="gradient")
    m.value_space.discriminator = torch.nn.Linear(8, 1)
    dz, _ = m.value_space.correction(torch.randn(3, 8))
    assert torch.allclose(dz, -m.value_space.discriminator.weight.expand(3, 8))


def test_conditional_path_is_noop_at_init_and_changes_after_training():
    m = _module()
    h = torch.randn(4, 16)
    prompt = torch.randn(4, 6, 16)
    assert torch.allclose(m.score(h, prompt), m.score(h, conditional=False))
    torch.nn.init.normal_(m.value_space.cross_attn.out_proj.weight)
    assert not torch.allclose(m.score(h, prompt), m.score(h, conditional=False))


@pytest.mark.parametrize("mode", ["last", "attention"])
def test_aggregator_ignores_padding(mode):
    m = _module(aggregator=mode)
    states = torch.randn(1, 4, 16)
    left = torch.cat([torch.randn(1, 2, 16) * 100, states], 1)
    right = torch.cat([states, torch.randn(1, 2, 16) * 100], 1)
    agg = m.value_space.aggregator
    ref = agg(states)
    assert torch.allclose(agg(left, torch.tensor([[0, 0, 1, 1, 1, 1]])), ref, atol=1e-5)
    assert torch.allclose(agg(right, torch.tensor([[1, 1, 1, 1, 0, 0]])), ref, atol=1e-5)


def test_bridge_shape_norm_and_gate():
    m = _module(num_bridge_tokens=5, gate_init=0.0)
    h = torch.randn(3, 16) * 40
    tokens = m.make_bridge(h).tokens
    assert tokens.shape == (3, 5, 16)
    # Gate 0: every Bridge Token is the normalised state, at the state's own scale.
    ratio = tokens.norm(dim=-1) / h.norm(dim=-1, keepdim=True)
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.05)
    assert torch.allclose(tokens[:, 0], tokens[:, 4])
    # An insert layer below the extract layer: the tokens are built at the stream's norm there.
    m.config.bridge_scale = 0.25
    assert torch.allclose(m.make_bridge(h).tokens, tokens * 0.25, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(extract_layer=4), "extract_layer"),
        (dict(extract_layer=1, insert_layer=-1), "insert_layer"),
        (dict(extract_layer=1, value_dim=10, num_heads=3), "num_heads"),
        (dict(extract_layer=1, aggregator="mean"), "aggregator"),
        (dict(extract_layer=1, dropout=1.0), "dropout"),
        (dict(extract_layer=1, memory_dropout=-0.1), "memory_dropout"),
        (dict(extract_layer=1, bridge_scale=0.0), "bridge_scale"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ValueModuleConfig(hidden_size=16, num_layers=4, **kwargs)


def test_generation_config_validation():
    from svgt import GenerationConfig

    with pytest.raises(ConfigError, match="momentum"):
        GenerationConfig(momentum=1.5)
    with pytest.raises(ConfigError, match="refresh_mode"):
        GenerationConfig(refresh_mode="slow")


def test_unknown_config_keys_warn():
    cfg = ValueModuleConfig(hidden_size=16, num_layers=4, extract_layer=2).to_dict()
    cfg["from_the_future"] = 1
    with pytest.warns(UserWarning, match="from_the_future"):
        ValueModuleConfig.from_dict(cfg)


def _autograd_gradient(vs, z):
    zg = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(vs.score(zg).sum(), zg)
    return g


def test_closed_form_gradient_equals_autograd_for_the_shipped_discriminator():
    m = _module(correction="gradient")
    vs = m.value_space
    for p in vs.discriminator.parameters():  # away from init, so GELU's curve is exercised on both sides
        torch.nn.init.normal_(p, std=1.0)
    z = 3 * torch.randn(32, 8)
    dz, s = vs.correction(z)
    assert torch.allclose(-dz, _autograd_gradient(vs, z), rtol=1e-5, atol=1e-6)
    assert torch.allclose(s, vs.score(z).detach(), rtol=1e-6, atol=1e-6)
    assert all(p.grad is None for p in m.parameters())


def test_other_discriminator_shapes_use_autograd():
    m = _module(correction="gradient")
    vs = m.value_space
    vs.discriminator = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    z = torch.randn(16, 8)
    with torch.inference_mode():
        dz, _ = vs.correction(z)
    assert torch.allclose(-dz, _autograd_gradient(vs, z), rtol=1e-5, atol=1e-6)
    # An approximate GELU is not the derivative the closed form computes.
    vs.discriminator = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU("tanh"), torch.nn.Linear(8, 1))
    dz, _ = vs.correction(z)
    assert torch.allclose(-dz, _autograd_gradient(vs, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_encode_step_with_a_prompt_memory_equals_encode(weight):
    m = _module(conditional_weight=weight)
    vs = m.value_space
    for p in vs.cross_attn.parameters():  # the out projection starts at zero: make the conditional path count
        torch.nn.init.normal_(p, std=0.5)
    prompts = torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, :3] = False  # left padding
    mask[2, :6] = False
    h = torch.randn(3, 16)
    with torch.inference_mode():
        want = vs.encode(h, prompts, mask)
        got = vs.encode_step(h, vs.prompt_memory(prompts, mask))
        unmasked = vs.encode_step(h, vs.prompt_memory(prompts))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert torch.allclose(unmasked, vs.encode(h, prompts), rtol=1e-5, atol=1e-5)
    if weight:  # the padding is really left out
        assert not torch.allclose(unmasked[0], got[0], atol=1e-4)


def test_memory_dropout_hides_prompt_tokens_in_training_only_and_keeps_each_rows_last():
    vs = _module(memory_dropout=0.5).value_space
    for p in vs.cross_attn.parameters():
        torch.nn.init.normal_(p, std=0.5)
    prompts, h = torch.randn(3, 7, 16), torch.randn(3, 16)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, :3] = False  # left padding
    mask[2, :6] = False  # one visible token: it must stay visible
    vs.eval()
    want = vs.encode(h, prompts, mask)
    assert torch.equal(vs.encode(h, prompts, mask), want)  # no dropout at inference
    torch.manual_seed(1)
    hidden = vs._hide_tokens(~mask, mask.shape)
    assert (hidden | mask).all()  # padding stays hidden
    assert not hidden[:, -1].any()  # every row keeps its last token
    assert 0 < (hidden & mask).sum() < mask.sum() - 3
    vs.train()
    assert not torch.allclose(vs.encode(h, prompts, mask), want, atol=1e-5)
    assert torch.allclose(vs.encode(h, prompts, mask)[2], want[2], atol=1e-5)  # nothing to hide in row 2


def _ensemble_module(stats, seed=0, **kw):
    from svgt.module import join_value_spaces

    main, other = _module(**kw), _module(**kw)
    torch.manual_seed(seed + 1)
    for p in other.value_space.parameters():  # another seed's space: not a copy of the first
        p.data.add_(0.3 * torch.randn_like(p))
    return join_value_spaces(main, [other.value_space], stats).eval(), main, other


def test_an_ensemble_averages_standardised_scores_on_the_first_spaces_scale():
    stats = [[0.5, 2.0], [-1.0, 0.25]]
    module, main, other = _ensemble_module(stats)
    h, prompt = torch.randn(6, 16), torch.randn(6, 5, 16)
    s_main, s_other = main.score(h, prompt), other.score(h, prompt)
    expected = 0.5 + 2.0 * ((s_main - 0.5) / 2.0 + (s_other + 1.0) / 0.25) / 2
    assert torch.allclose(module.score(h, prompt), expected, atol=1e-5)
    # Per token too (stage 3's safety term); and the decoder's step-wise path gives the same value state.
    tokens = torch.randn(6, 3, 16)
    per_token = 0.5 + 2.0 * ((main.score(tokens, prompt) - 0.5) / 2.0 + (other.score(tokens, prompt) + 1.0) / 0.25) / 2
    assert torch.allclose(module.score(tokens, prompt), per_token, atol=1e-5)
    judge = module.judge
    z = judge.encode(h, prompt)
    assert z.shape == (6, 16)
    assert torch.allclose(judge.encode_step(h, judge.prompt_memory(prompt)), z, atol=1e-5)


def test_an_ensemble_steps_along_the_first_space_as_far_as_the_average_says():
    # The second space's statistics put about half the rows on either side of -margin.
    module, _, _ = _ensemble_module([[0.0, 1.0], [0.5, 0.1]], margin=0.5)
    linear = torch.nn.Linear(8, 1)
    module.value_space.discriminator = linear  # a linear first space: its Newton step is exact
    h, prompt = torch.randn(64, 16), torch.randn(64, 5, 16)
    judge = module.judge
    z = judge.encode(h, prompt)
    dz, s = judge.correction(z)
    assert dz.shape == (64, 8) and torch.allclose(s, judge.score(z))
    corrected = s > -0.5
    assert corrected.any() and (~corrected).any()
    assert torch.all(dz[~corrected] == 0)  # the average says safe: no step, whatever the first space says
    z_main = judge.split(z)[0]
    moved = linear(z_main + dz).squeeze(-1) - linear(z_main).squeeze(-1)
    assert torch.allclose(moved[corrected], -(s[corrected] + 0.5), atol=1e-4)


def test_one_value_space_is_judged_by_itself_and_more_need_their_statistics():
    module = _module()
    assert module.judge is module.value_space and len(module.more_spaces) == 0
    with pytest.raises(ConfigError, match="score_stats"):
        ValueModuleConfig(hidden_size=16, num_layers=4, extract_layer=2, value_spaces=2)
    with pytest.raises(ConfigError, match="score_stats"):
        ValueModuleConfig(hidden_size=16, num_layers=4, extract_layer=2, value_spaces=2,
                          score_stats=[[0.0, 1.0], [0.0, 0.0]])
