"""`svgt` (Bridge Tokens) and `svgt_inject` (the paper's ablation: the same module's correction added to the
residual stream instead of Bridge Tokens)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from ..artifact import weights_digest
from ..config import GenerationConfig
from ..generation import co_judge_opinions, generate, judge_prompts
from ..module import ValueModule
from ..pipeline import load_guided_model
from ..prompts import encode_prompts, part_ids
from .base import Method, MethodContext, MethodOutput
from .tuning import sweep, tune


def _load_module(ctx: MethodContext) -> tuple[ValueModule, str]:
    guided = load_guided_model(ctx.backbone, ctx.extras.get("artifact"), allow_untrained=False,
                               margin=ctx.extras.get("margin"), gate_threshold=ctx.extras.get("gate_threshold"),
                               co_judge=ctx.extras.get("co_judge", True))
    return guided.module, str(guided.artifact)


class _ModuleMethod(Method):
    """A method driven by a trained value module: loads it, then tunes `grid` (if any) on the tuning set."""

    grid: list[dict[str, Any]]
    module: ValueModule | None

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = ctx.backbone
        self.module, artifact = _load_module(ctx)
        self.params["artifact"] = artifact
        self.params["weights_sha256"] = weights_digest(artifact)
        # Everything the module's answers depend on beyond its weights, so a run resumed after a retune is caught.
        self.params["margin"] = self.module.config.margin
        self.params["gate_threshold"] = self.module.config.gate_threshold
        self.params["score_last_sentence"] = self.module.config.score_last_sentence
        if self.module.config.co_judge:  # recorded only when there is one, so earlier runs still resume
            self.params["co_judge"] = self.module.config.co_judge
        if self.grid:
            self.params, self.search = tune(self, self.grid, ctx)
        return self.params

    def _use_margin(self) -> None:
        """The module reads its margin from its config; `params` is where a sweep sets it."""
        assert self.module is not None, "prepare() first"
        self.module.config.set_margin(self.params["margin"])


class SVGTMethod(_ModuleMethod):
    name = "svgt"

    def __init__(self, refresh_every: int = 0, momentum: float = 0.5, grid: list[dict[str, Any]] | None = None,
                 sweep_margins: Sequence[float] = ()):
        """`sweep_margins`: margins to measure on the tuning set by the baselines' protocol, for the record only
        (the margin used stays the artifact's, chosen by `svgt train`). It puts svgt on the report's tuning-search
        plot beside the baselines' candidates, at about two minutes per margin on 2 CPU cores, so it is opt-in
        (`svgt eval --sweep-margins 0,2,4,6`)."""
        super().__init__()
        self.params = {"refresh_every": refresh_every, "momentum": momentum}
        self.grid = grid or []
        self.sweep_margins = [float(m) for m in sweep_margins]
        self.module: ValueModule | None = None

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        super().prepare(ctx)
        if self.sweep_margins and not self.grid:
            margins = sorted({*self.sweep_margins, self.params["margin"]})
            self.search = sweep(self, [{"margin": m} for m in margins], ctx)
            for row in self.search:
                if row["params"]["margin"] == self.params["margin"]:
                    row.update(chosen=True, rule="the artifact's margin, chosen by `svgt train` (its metrics.json)")
            self._use_margin()  # the sweep left the module at its last candidate
        return self.params

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> MethodOutput:
        assert self.backbone is not None and self.module is not None, "prepare() first"
        self._use_margin()
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, refresh_every=self.params["refresh_every"],
                               momentum=self.params["momentum"])
        start = time.perf_counter()
        res = generate(self.backbone, self.module, prompts, cfg, batch_size=batch_size)
        return MethodOutput(res.texts, [len(t) for t in res.token_ids], time.perf_counter() - start,
                            [t.score for t in res.telemetry])


class SVGTInjectMethod(_ModuleMethod):
    """The trained module's correction `φ(Δz) − φ(0)` (zero for a state judged safe), rescaled to the RMS of the
    prompt's state and multiplied by a tuned factor, is added to the residual stream at the insert layer at the last
    prompt position and every generated position. No Bridge Tokens."""

    name = "svgt_inject"

    def __init__(self, multiplier: float = 1.0, grid: list[dict[str, Any]] | None = None):
        super().__init__()
        self.params = {"multiplier": multiplier}
        # 0.125 and 0.25: on the default backbone every multiplier from 0.5 up doubled the tuning set's benign PPL
        self.grid = grid if grid is not None else [{"multiplier": m} for m in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)]
        self.module: ValueModule | None = None
        self._vectors: torch.Tensor | None = None

    @torch.inference_mode()
    def _corrections(self, ids: torch.Tensor, mask: torch.Tensor, paragraphs: list[list[list[int]]],
                     opinions: torch.Tensor | None = None) -> torch.Tensor:
        """Per prompt, the injected vector; the prompt is scored as `svgt` scores it (paragraphs and co-judge
        included)."""
        module = self.module
        h, z = judge_prompts(self.backbone, module, ids, mask, paragraphs)
        delta_z, _ = module.judge.correction(z, opinions)
        phi = module.bridge.phi
        u = phi(delta_z) - phi(torch.zeros_like(delta_z))
        rms = h.pow(2).mean(-1, keepdim=True).sqrt()
        return u * rms  # φ works in units of the state's RMS (see LatentValueBridge); bring it back to scale

    @contextmanager
    def _inject(self, vectors: torch.Tensor) -> Iterator[None]:
        layer = self.backbone.layers[self.module.config.insert_layer]
        scaled = self.params["multiplier"] * vectors

        def hook(mod: Any, args: tuple, kwargs: dict):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            added = torch.zeros_like(hidden)
            added[:, -1] = scaled.to(hidden.dtype)  # prefill: last prompt position; decoding: the new token
            hidden = hidden + added
            if "hidden_states" in kwargs:
                kwargs["hidden_states"] = hidden
                return args, kwargs
            return (hidden, *args[1:]), kwargs

        handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> MethodOutput:
        assert self.backbone is not None and self.module is not None, "prepare() first"
        self._use_margin()
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, guidance=False)
        texts: list[str] = []
        tokens: list[int] = []
        start = time.perf_counter()
        last = self.module.config.score_last_sentence
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i : i + batch_size]
            ids, mask = encode_prompts(self.backbone.tokenizer, chunk, device=self.backbone.device)
            paragraphs = [part_ids(self.backbone.tokenizer, p, last_sentence=last) for p in chunk]
            opinions = co_judge_opinions(self.module, chunk, GenerationConfig())
            with self._inject(self._corrections(ids, mask, paragraphs, opinions)):
                res = generate(self.backbone, None, chunk, cfg, batch_size=len(chunk))
            texts += res.texts
            tokens += [len(t) for t in res.token_ids]
        return MethodOutput(texts, tokens, time.perf_counter() - start)
