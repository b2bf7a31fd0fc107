import json

import pytest
from conftest import make_module
from tiny import save_tiny_hf_backbone

from svgt import load_backbone, save_pretrained
from svgt.cli import main


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_hf_backbone(tmp_path_factory.mktemp("bb") / "tiny")


@pytest.fixture(scope="module")
def artifact(tiny_path, tmp_path_factory):
    bb = load_backbone(tiny_path)
    out = tmp_path_factory.mktemp("art") / "vm"
    save_pretrained(make_module(bb), out, bb)
    return str(out)


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_generate_json_in_order_with_telemetry(tiny_path, artifact, capsys, tmp_path):
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text('{"prompt": "from file one"}\n\n{"prompt": "from file two"}\n')
    code = main(["generate", "first arg", "--prompts-file", str(prompts_file), "--backbone", tiny_path,
                 "--artifact", artifact, "--max-new-tokens", "4", "--refresh-every", "2", "--json"])
    assert code == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [r["prompt"] for r in rows] == ["first arg", "from file one", "from file two"]
    for r in rows:
        assert set(r) >= {"prompt", "text", "telemetry", "finish_reason"}
        assert set(r["telemetry"]) == {"bridge_score", "bridged_at", "score", "delta_z_norm", "refreshed"}
        assert r["artifact"] == artifact


def test_no_guidance_matches_backbone_generate(tiny_path, artifact, capsys):
    import torch

    assert main(["generate", "hello world", "--backbone", tiny_path, "--no-guidance", "--max-new-tokens", "6",
                 "--json"]) == 0
    text = _json_lines(capsys.readouterr().out)[0]["text"]
    bb = load_backbone(tiny_path)
    ids = bb.tokenizer.apply_chat_template([{"role": "user", "content": "hello world"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = bb.model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    if 1 in new:
        new = new[: new.index(1)]
    assert text == bb.tokenizer.decode(new, skip_special_tokens=True)


def test_plain_text_prompts_file(tiny_path, artifact, capsys, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("one prompt\n\nanother prompt\n")
    assert main(["generate", "--prompts-file", str(f), "--backbone", tiny_path, "--artifact", artifact,
                 "--max-new-tokens", "2", "--json"]) == 0
    assert [r["prompt"] for r in _json_lines(capsys.readouterr().out)] == ["one prompt", "another prompt"]


@pytest.mark.parametrize(
    "content, message",
    [('{"prompt": "ok"}\n{"text": "no prompt"}\n', ":2: expected an object with a non-empty string field 'prompt'"),
     ('{"prompt": "ok"}\n{broken\n', ":2: invalid JSON")],
)
def test_bad_prompts_file_names_line(tiny_path, capsys, tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    assert main(["generate", "--prompts-file", str(f), "--backbone", tiny_path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("svgt: error: ") and message in err[-1]


def test_errors_are_one_line_not_tracebacks(tiny_path, capsys, tmp_path):
    assert main(["generate", "x", "--prompts-file", str(tmp_path / "missing.txt"), "--backbone", tiny_path]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["generate", "x", "--backbone", tiny_path, "--artifact", str(tmp_path)]) == 2
    assert "not an svgt artifact" in capsys.readouterr().err
    assert main(["generate", "x", "--backbone", tiny_path, "--momentum", "2"]) == 2
    assert "momentum" in capsys.readouterr().err
    assert main(["generate", "--backbone", tiny_path]) == 2
    assert "no prompts" in capsys.readouterr().err
    assert main(["info", "--backbone", str(tmp_path / "nowhere")]) == 2
    assert "cannot load backbone" in capsys.readouterr().err


def test_info_json(tiny_path, artifact, capsys):
    assert main(["info", "--backbone", tiny_path, "--artifact", artifact, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backbone_path"] == tiny_path and info["num_layers"] == 4
    assert info["artifact_config"]["module"]["num_bridge_tokens"] == 3


def test_margin_option_on_every_guided_command():
    from svgt.cli import build_parser

    parser = build_parser()
    for argv in (["generate", "hi"], ["demo"], ["eval", "--suites", "harmbench"], ["serve"]):
        assert parser.parse_args([*argv, "--margin", "2.5"]).margin == 2.5
        assert parser.parse_args(argv).margin is None


def test_eval_sweep_margins_parses_and_rejects_bad_lists(capsys):
    from svgt.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["eval", "--sweep-margins", "0, 2,4.5"]).sweep_margins == [0.0, 2.0, 4.5]
    assert parser.parse_args(["eval"]).sweep_margins == []
    for bad, message in (("0,two", "comma-separated numbers"), ("1,-2", "margins >= 0")):
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", "--sweep-margins", bad])
        assert message in capsys.readouterr().err


def test_eval_reuse_settings_fails_fast_naming_the_file(tmp_path, capsys):
    code = main(["eval", "--methods", "cast", "--suites", "harmbench", "--reuse-settings", str(tmp_path),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"--reuse-settings: {tmp_path / 'methods.jsonl'}: no such file" in capsys.readouterr().err


def test_load_guided_model_applies_and_checks_the_margin(tmp_path):
    from svgt.pipeline import load_guided_model

    bb = load_backbone(save_tiny_hf_backbone(tmp_path / "bb"))
    save_pretrained(make_module(bb), tmp_path, bb)
    assert load_guided_model(bb, tmp_path).module.config.margin == 0.0
    assert load_guided_model(bb, tmp_path, margin=1.5).module.config.margin == 1.5
    with pytest.raises(ValueError, match="margin"):
        load_guided_model(bb, tmp_path, margin=-1.0)


def test_device_and_dtype_on_every_verb_that_loads_a_backbone():
    from svgt.cli import build_parser

    parser = build_parser()
    verbs = (["generate", "hi"], ["info"], ["demo"], ["train"], ["eval"], ["serve"], ["bench"])
    for argv in verbs:
        args = parser.parse_args(argv)
        assert (args.device, args.dtype) == ("auto", "auto"), argv
        args = parser.parse_args([*argv, "--device", "cpu", "--dtype", "bfloat16"])
        assert (args.device, args.dtype) == ("cpu", "bfloat16"), argv


def test_generate_and_info_in_bfloat16_on_the_cpu(tiny_path, artifact, capsys):
    assert main(["info", "--backbone", tiny_path, "--artifact", artifact, "--json", "--dtype", "bfloat16",
                 "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["device"], info["dtype"]) == ("cpu", "bfloat16")
    argv = ["generate", "hello world", "--backbone", tiny_path, "--artifact", artifact, "--json",
            "--max-new-tokens", "4"]
    assert main([*argv, "--dtype", "float32"]) == 0
    full = _json_lines(capsys.readouterr().out)[0]
    assert main([*argv, "--dtype", "bfloat16"]) == 0
    half = _json_lines(capsys.readouterr().out)[0]
    assert half["text"] == full["text"]  # a short greedy answer survives bfloat16 on a tiny model


def test_unavailable_device_is_a_one_line_error(tiny_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["info", "--backbone", tiny_path, "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert main(["info", "--backbone", tiny_path, "--device", "tpu"]) == 2
    assert "not one of auto, cpu" in capsys.readouterr().err


@pytest.mark.parametrize("item, message", [("insert_layer=x", "insert_layer takes int | None, got 'x'"),
                                           ("stage3_lr=fast", "stage3_lr takes float"),
                                           ("margins=2", "margins takes tuple[float, ...]"),
                                           ("nonsense=1", "expected KEY=VALUE with KEY one of")])
def test_train_set_checks_the_value_against_the_field(tiny_path, capsys, tmp_path, item, message):
    assert main(["train", "--backbone", tiny_path, "--out", str(tmp_path / "o"), "--set", item]) == 2
    assert message in capsys.readouterr().err


def test_retune_starts_from_the_recipe_the_artifact_records(tiny_path, tmp_path, monkeypatch, capsys):
    from svgt.training import trainer

    bb = load_backbone(tiny_path)
    out = tmp_path / "o"
    save_pretrained(make_module(bb), out, bb, training={"seed": 3, "max_sharegpt": 40, "margins": [0.0, 2.0],
                                                        "gate_thresholds": [None], "retired_field": 1})
    seen = {}
    monkeypatch.setattr(trainer, "retune", lambda backbone, out_dir, cfg: seen.setdefault("cfg", cfg) and {})
    assert main(["train", "--backbone", tiny_path, "--out", str(out), "--retune", "--set", "max_sharegpt=50"]) == 0
    cfg = seen.pop("cfg")  # the module's own seed and grid, the override on top
    assert (cfg.seed, cfg.max_sharegpt, cfg.margins, cfg.gate_thresholds) == (3, 50, (0.0, 2.0), (None,))
    captured = capsys.readouterr()  # dropped, and said so on stderr; stdout holds only the result
    assert "ignored: retired_field" in captured.err and json.loads(captured.out) == {"tuning": {}}
    assert main(["train", "--backbone", tiny_path, "--out", str(out), "--retune", "--seed", "1"]) == 0
    assert (seen["cfg"].seed, seen["cfg"].max_sharegpt) == (1, 40)
    assert main(["train", "--backbone", tiny_path, "--out", str(tmp_path / "none"), "--retune"]) == 2
    assert "records the recipe" in capsys.readouterr().err


def test_train_will_not_write_over_a_trained_module_or_checkpoints_unasked(tiny_path, tmp_path, monkeypatch, capsys):
    from svgt.training import trainer

    runs = []
    monkeypatch.setattr(trainer, "train", lambda *a, **k: runs.append(k["resume"]) or {"timings_s": {}})
    out = tmp_path / "o"
    (out / "checkpoints").mkdir(parents=True)
    train = ["train", "--backbone", tiny_path, "--out", str(out), "--no-eval"]
    assert main(train) == 2
    assert "holds an interrupted run's checkpoints: --resume continues it, --overwrite" in capsys.readouterr().err
    (out / "value_module.safetensors").write_bytes(b"")
    assert main(train) == 2 and "holds a trained module" in capsys.readouterr().err
    assert runs == []  # refused before anything ran
    assert main(train + ["--resume"]) == 0 and main(train + ["--overwrite"]) == 0 and runs == [True, False]


@pytest.mark.parametrize("flags, stages", [([], (1, 2, 3)), (["--stage", "3"], (3,)),
                                           (["--stage", "2", "--stage", "1"], (1, 2))])
def test_train_runs_the_stages_named(tiny_path, tmp_path, monkeypatch, capsys, flags, stages):
    from svgt.training import trainer

    seen = {}

    def fake_train(backbone, out, cfg, stages, resume, evaluate):
        seen["stages"] = stages
        return {"timings_s": {}}

    monkeypatch.setattr(trainer, "train", fake_train)
    assert main(["train", "--backbone", tiny_path, "--out", str(tmp_path / "o"), "--no-eval", *flags]) == 0
    assert seen["stages"] == stages
