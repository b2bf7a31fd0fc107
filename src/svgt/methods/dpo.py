"""`dpo_lora`: Direct Preference Optimization (Rafailov et al., 2023) of LoRA adapters on the attention projections.

Preference pairs come from the training data only (never the tuning or evaluation sets), built by
`svgt.methods.pairs.preference_pairs`: for a harmful prompt a refusal is chosen over the backbone's own complying
answer, for a benign one the backbone's answer over a refusal. Prompts go through the backbone's
chat template exactly as in generation (TRL's conversational format when the tokenizer has a template, else the
plain prompt). Training is TRL's `DPOTrainer` (sigmoid loss, `beta`), with PEFT LoRA (rank 8) on the attention
projections found for the family (q_proj/v_proj for Llama-style, c_attn for GPT-2, ...). The reference policy is
the backbone with the adapters disabled. It trains on a deep copy of the model, so the frozen backbone is never
touched; only the LoRA tensors are kept, and are cached as safetensors under `cache_dir()/"dpo"` keyed by a
fingerprint of the backbone, the pairs and the training settings, so a second `prepare` reuses them.

`steering()` injects the adapters into the live backbone with PEFT and takes them out again on exit (also on
error), putting back the original modules, so outside it the backbone is bit-identical and generates as before.
With a `grid` of more than one setting (e.g. `[{"beta": 0.1}, {"beta": 0.5}]`), one adapter is trained per setting
and one is chosen on the tuning set with `tune`; the default is the single setting given to the constructor.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import os
import random
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..backbone import Backbone, cache_dir
from ..prompts import has_chat_template
from .base import Method, MethodContext
from .pairs import preference_pairs
from .tuning import tune

TRAIN_KEYS = ("beta", "learning_rate", "epochs", "max_steps", "batch_size", "lora_r", "lora_alpha", "max_length")
"""The settings an adapter depends on; a grid entry may override any of them."""

# Attention projections to adapt, per family: the first group with a match in the model wins.
_TARGETS = (("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("qkv_proj",), ("Wqkv",))


def lora_targets(model: nn.Module) -> list[str]:
    """Module-name suffixes of the attention projections to put LoRA on."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for group in _TARGETS:
        if all(t in names for t in group):
            return list(group)
    raise ValueError(f"dpo_lora: no known attention projection in {type(model).__name__} (tried {_TARGETS})")


def backbone_fingerprint(backbone: Backbone) -> str:
    """Name, path, revision, tokenizer template and a strided sample of every tensor: cheap, and sensitive to which
    weights are loaded."""
    h = hashlib.sha256(json.dumps([backbone.name, backbone.path, backbone.revision, type(backbone.model).__name__,
                                   getattr(backbone.tokenizer, "chat_template", None)], default=str).encode())
    for name, tensor in backbone.model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)][:4096].to("cpu", torch.float32)
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def remove_lora(model: nn.Module) -> None:
    """Put back the original module in place of every PEFT layer (the adapters are dropped, not merged)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())


class DPOLoRAMethod(Method):
    name = "dpo_lora"
    uses_backbone_answers = True

    def __init__(self, max_pairs: int = 256, beta: float = 0.1, learning_rate: float = 5e-4, epochs: int = 1,
                 max_steps: int = -1, batch_size: int = 8, lora_r: int = 8, lora_alpha: int = 16,
                 max_length: int = 256, grid: list[dict[str, Any]] | None = None, tune_limit: int = 30,
                 tune_max_new_tokens: int = 24, use_cache: bool = True):
        """`max_steps` > 0 caps optimizer steps (overrides `epochs`); `max_length` caps prompt+answer tokens."""
        super().__init__()
        self.max_pairs, self.use_cache = max_pairs, use_cache
        self.settings = {"beta": beta, "learning_rate": learning_rate, "epochs": epochs, "max_steps": max_steps,
                         "batch_size": batch_size, "lora_r": lora_r, "lora_alpha": lora_alpha, "max_length": max_length}
        self.grid = [dict(g) for g in grid] if grid else [{}]
        self.tune_limit, self.tune_max_new_tokens = tune_limit, tune_max_new_tokens
        self.targets: list[str] = []
        self.adapters: dict[str, dict[str, torch.Tensor]] = {}
        """Per training-settings key: the LoRA tensors, named as in the backbone once injected."""
        self.losses: dict[str, list[float]] = {}
        """Per training-settings key: the DPO loss at each optimizer step."""
        self.cache_files: dict[str, Path] = {}

    @staticmethod
    def _key(params: dict[str, Any]) -> str:
        return json.dumps({k: params[k] for k in TRAIN_KEYS}, sort_keys=True)

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = ctx.backbone
        pairs = preference_pairs(ctx, self.max_pairs)
        if not pairs:
            raise ValueError("dpo_lora: no preference pairs; ctx.extras needs 'harmful_answers' and/or "
                             "'benign_answers' (prompt -> the backbone's own answer) for the training prompts")
        self.targets = lora_targets(self.backbone.model)
        fingerprint = hashlib.sha256(json.dumps(
            [backbone_fingerprint(self.backbone), pairs, self.targets, ctx.seed, _version("trl"), _version("peft"),
             _version("transformers"), torch.__version__]).encode()).hexdigest()
        for candidate in self.grid:
            hp = {**self.settings, **candidate}
            key = self._key(hp)
            name = hashlib.sha256((fingerprint + key).encode()).hexdigest()[:32]
            path = cache_dir() / "dpo" / f"{name}.safetensors"
            self.cache_files[key] = path
            if self.use_cache and path.exists():
                self.adapters[key], self.losses[key] = self._load(path)
            else:
                self.adapters[key], self.losses[key] = self._train(pairs, hp, ctx.seed)
                if self.use_cache:
                    self._save(path, self.adapters[key], self.losses[key], hp)
        self.params = {**self.settings, "lora_targets": self.targets, "pairs": len(pairs),
                       "pairs_harmful": sum(p["kind"] == "harmful" for p in pairs),
                       "pairs_benign": sum(p["kind"] == "benign" for p in pairs)}
        if len(self.grid) > 1:
            self.params, self.search = tune(self, self.grid, ctx, limit=self.tune_limit,
                                            max_new_tokens=self.tune_max_new_tokens)
        else:
            self.params = {**self.params, **self.grid[0]}
        losses = self.losses[self._key(self.params)]
        self.params.update(steps=len(losses), first_loss=losses[0] if losses else None,
                           final_loss=losses[-1] if losses else None)
        return self.params

    def _lora(self, hp: dict[str, Any]):
        from peft import LoraConfig

        conv1d = any(type(m).__name__ == "Conv1D" and n.rsplit(".", 1)[-1] in self.targets
                     for n, m in self.backbone.model.named_modules())  # GPT-2 stores weights transposed
        return LoraConfig(r=hp["lora_r"], lora_alpha=hp["lora_alpha"], lora_dropout=0.0, bias="none",
                          target_modules=self.targets, fan_in_fan_out=conv1d, task_type="CAUSAL_LM")

    def _rows(self, pairs: list[dict[str, str]]) -> list[dict[str, Any]]:
        if has_chat_template(self.backbone.tokenizer):  # TRL renders these with the same template as generation
            return [{"prompt": [{"role": "user", "content": p["prompt"]}],
                     "chosen": [{"role": "assistant", "content": p["chosen"]}],
                     "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]
        return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]

    def _train(self, pairs: list[dict[str, str]], hp: dict[str, Any], seed: int
               ) -> tuple[dict[str, torch.Tensor], list[float]]:
        """DPO on a deep copy of the backbone; returns the LoRA tensors and the loss per step."""
        import datasets
        from datasets import Dataset
        from transformers import PrinterCallback
        from trl import DPOConfig, DPOTrainer

        bb = self.backbone
        rng = (random.getstate(), torch.get_rng_state(), _numpy_state(), torch.cuda.is_available()
               and torch.cuda.get_rng_state_all())  # TRL's set_seed reseeds every generator
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            with tempfile.TemporaryDirectory(prefix="svgt-dpo-") as tmp:
                args = DPOConfig(
                    output_dir=tmp, beta=hp["beta"], learning_rate=hp["learning_rate"],
                    num_train_epochs=hp["epochs"], max_steps=hp["max_steps"],
                    per_device_train_batch_size=hp["batch_size"], max_length=hp["max_length"],
                    loss_type=["sigmoid"], bf16=False, fp16=False, use_cpu=bb.device.type == "cpu",
                    activation_checkpointing=False, gradient_checkpointing=None, report_to="none",
                    save_strategy="no", logging_steps=1, disable_tqdm=True, push_to_hub=False, seed=seed,
                    data_seed=seed, dataloader_pin_memory=False, dataloader_num_workers=0, log_level="error")
                with warnings.catch_warnings():  # TRL still reads the deprecated gradient_checkpointing names
                    warnings.filterwarnings("ignore", category=FutureWarning, message=".*checkpointing.*")
                    trainer = DPOTrainer(model=copy.deepcopy(bb.model), args=args, processing_class=copy.deepcopy(
                        bb.tokenizer), train_dataset=Dataset.from_list(self._rows(pairs)), peft_config=self._lora(hp))
                    trainer.remove_callback(PrinterCallback)
                    trainer.train()
        finally:
            if bars:
                datasets.enable_progress_bars()
            random.setstate(rng[0])
            torch.set_rng_state(rng[1])
            _numpy_state(rng[2])
            if rng[3]:
                torch.cuda.set_rng_state_all(rng[3])
        losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
        prefix = "base_model.model."
        state = {n.removeprefix(prefix): p.detach().to("cpu", torch.float32).clone()
                 for n, p in trainer.model.named_parameters() if "lora_" in n}
        del trainer
        return state, losses

    @staticmethod
    def _save(path: Path, state: dict[str, torch.Tensor], losses: list[float], hp: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"losses": json.dumps(losses), "settings": json.dumps(hp)})
        os.replace(tmp, path)

    @staticmethod
    def _load(path: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        return state, json.loads(meta.get("losses", "[]"))

    def steering(self):
        return self._steer()

    @contextmanager
    def _steer(self) -> Iterator[None]:
        from peft.tuners.lora import LoraModel

        assert self.backbone is not None, "dpo_lora: prepare() first"
        state = self.adapters[self._key(self.params)]
        model = self.backbone.model
        had_peft_config = "peft_config" in model.__dict__
        try:
            LoraModel(model, self._lora(self.params), "default")  # injects the layers in place
            result = model.load_state_dict({k: v.to(self.backbone.device) for k, v in state.items()}, strict=False)
            missing = [k for k in result.missing_keys if "lora_" in k]
            if result.unexpected_keys or missing:
                raise RuntimeError(f"dpo_lora: adapter does not fit the backbone (unexpected "
                                   f"{result.unexpected_keys[:3]}, missing {missing[:3]})")
            model.eval()
            yield
        finally:
            remove_lora(model)
            if not had_peft_config:
                model.__dict__.pop("peft_config", None)


def _numpy_state(state: Any = None) -> Any:
    try:
        import numpy as np
    except ImportError:
        return None
    if state is None:
        return np.random.get_state()
    np.random.set_state(state)
    return None
