"""svgt.cache and `svgt cache`: the states and answers folders say what they hold, and only what no svgt here reads
is pruned."""

import json
from types import SimpleNamespace

import pytest
from tiny import tiny_backbone

from svgt.backbone import numerics_versions
from svgt.cache import KEY_FILE, entries, human, prune
from svgt.cli import main
from svgt.training import activations, answers
from svgt.training.activations import cached_states, encode_pair


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SVGT_CACHE", str(tmp_path))
    return tmp_path


def _fake_answers(monkeypatch):
    monkeypatch.setattr(answers, "generate", lambda b, m, prompts, cfg, batch_size: SimpleNamespace(
        texts=[f"answer to {p}" for p in prompts]))


def test_the_caches_record_what_each_folder_holds(root, monkeypatch):
    backbone = tiny_backbone("llama")
    cached_states(backbone, 2, [encode_pair(backbone, "hello there", None, 16, 4)])
    _fake_answers(monkeypatch)
    assert answers.backbone_answers(backbone, ["Name a planet."], 4, "answers") == ["answer to Name a planet."]
    [states] = (root / "activations").iterdir()
    info = json.loads((states / KEY_FILE).read_text())
    assert info["layer"] == 2 and info["versions"] == numerics_versions() and info["backbone"] == backbone.name
    [store] = (root / "answers").iterdir()
    info = json.loads((store / KEY_FILE).read_text())
    assert info["new tokens"] == 4 and info["versions"] == numerics_versions()
    # The record is not read as answers, and does not stop the cache from answering again from disk.
    monkeypatch.setattr(answers, "generate", lambda *a, **k: pytest.fail("answered again"))
    assert answers.backbone_answers(backbone, ["Name a planet."], 4, "answers") == ["answer to Name a planet."]
    assert not [e for e in entries(root) if e.stale]


def test_prune_deletes_other_releases_folders_and_legacy_files_and_keeps_the_rest(root, monkeypatch):
    backbone = tiny_backbone("llama")
    pairs = [encode_pair(backbone, "hello there", None, 16, 4)]
    real = numerics_versions()
    monkeypatch.setattr(activations, "numerics_versions", lambda: {**real, "torch": "9.9.9"})
    cached_states(backbone, 2, pairs)  # a folder from another torch release
    monkeypatch.setattr(activations, "numerics_versions", lambda: real)
    cached_states(backbone, 2, pairs)  # and this one's
    (root / "activations" / "0123456789abcdef0123.safetensors").write_bytes(b"x" * 10)  # a whole-data-set file
    unknown = root / "answers" / "00000000000000000000"  # a folder from before the records
    unknown.mkdir(parents=True)
    (unknown / "a.json").write_text("{}")
    (root / "backbones" / "tiny-1.0-fp32").mkdir(parents=True)
    items = entries(root)
    stale = [e for e in items if e.stale]
    assert len(items) == 5 and len(stale) == 2
    assert any("torch 9.9.9" in e.why for e in stale) and any(e.path.is_file() for e in stale)
    assert prune(items) == sum(e.size for e in stale)
    left = entries(root)
    assert len(left) == 3 and not [e for e in left if e.stale]
    assert unknown.exists() and "unknown" in next(e.what for e in left if e.path == unknown)
    monkeypatch.setattr(activations, "compute_states", lambda *a, **k: pytest.fail("computed again"))
    cached_states(backbone, 2, pairs)  # this release's states survived the prune


def test_the_cache_command_lists_and_prunes(root, capsys):
    (root / "activations").mkdir()
    (root / "activations" / "0123456789abcdef0123.safetensors").write_bytes(b"x" * 2048)
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "stale" in out and "2.0 KiB" in out and "svgt cache --prune" in out
    assert (root / "activations" / "0123456789abcdef0123.safetensors").exists()  # listing deletes nothing
    assert main(["cache", "--prune"]) == 0
    assert "deleted 1 stale entries, 2.0 KiB freed" in capsys.readouterr().out
    assert not list((root / "activations").iterdir())


def test_human_sizes():
    assert [human(n) for n in (5, 2048, 3 * 2**20, 5 * 2**30)] == ["5 B", "2.0 KiB", "3.0 MiB", "5.0 GiB"]
