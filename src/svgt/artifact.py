"""Saving and loading a value module: a directory with a JSON config and safetensors weights, never a pickle.

    <dir>/svgt_config.json        svgt version, backbone identity and shape, module config, data and training info
    <dir>/value_module.safetensors  the value module's weights only (the backbone is never in here)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from . import __version__
from .backbone import Backbone, numerics_versions
from .config import ValueModuleConfig
from .module import ValueModule

CONFIG_NAME = "svgt_config.json"
WEIGHTS_NAME = "value_module.safetensors"
FORMAT = "svgt-value-module"
FORMAT_VERSION = 1


class ArtifactError(RuntimeError):
    """An artifact is missing, malformed, or made for another backbone."""


def backbone_identity(backbone: Backbone) -> dict[str, Any]:
    return {
        "name": backbone.name,
        "revision": backbone.revision,
        "model_type": getattr(backbone.model.config, "model_type", None),
        "hidden_size": backbone.hidden_size,
        "num_layers": backbone.num_layers,
    }


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pretrained(
    module: ValueModule,
    directory: str | os.PathLike[str],
    backbone: Backbone,
    *,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact; each file is replaced atomically so a crash never leaves a half-written one."""
    if module.config.hidden_size != backbone.hidden_size or module.config.num_layers != backbone.num_layers:
        raise ArtifactError(
            f"module was built for hidden size {module.config.hidden_size} / {module.config.num_layers} layers, "
            f"backbone {backbone.name!r} has {backbone.hidden_size} / {backbone.num_layers}"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "svgt_version": __version__,
        "saved_with": {"python": platform.python_version(), **numerics_versions()},
        "backbone": backbone_identity(backbone),
        "module": module.config.to_dict(),
        "data": data or {},
        "training": training or {},
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    _atomic_write(out / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    _atomic_write(out / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return out


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ArtifactError(f"{path} not found: {directory} is not an svgt artifact directory")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{path}: field 'format' is {config.get('format')!r}, expected {FORMAT!r}")
    for key in ("backbone", "module"):
        if not isinstance(config.get(key), dict):
            raise ArtifactError(f"{path}: missing or malformed field {key!r}")
    return config


def weights_digest(directory: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the SHA-256 of an artifact's weights file: which trained module it is, whatever
    its path (an evaluation run records it, so a module retrained in place is not mistaken for the one before)."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise ArtifactError(f"{weights} not found")
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_pretrained(directory: str | os.PathLike[str], backbone: Backbone, co_judge: bool = True) -> ValueModule:
    """Restore a value module for `backbone`; refuses a backbone of another shape, naming both. With `co_judge`,
    the co-judge its config names (`ValueModuleConfig.co_judge`) is loaded and attached too (`svgt.cojudge`)."""
    config = read_config(directory)
    saved = config["backbone"]
    mismatches = [
        f"{key} {saved.get(key)} vs {value}"
        for key, value in (("hidden_size", backbone.hidden_size), ("num_layers", backbone.num_layers))
        if saved.get(key) != value
    ]
    if mismatches:
        raise ArtifactError(
            f"artifact {directory} was trained for backbone {saved.get('name')!r}, which does not match backbone "
            f"{backbone.name!r}: " + "; ".join(mismatches)
        )
    if saved.get("name") not in (None, backbone.name):
        warnings.warn(
            f"artifact {directory} was trained on backbone {saved.get('name')!r}, loading it onto {backbone.name!r} "
            "(same shape, but the value module may not transfer)",
            stacklevel=2,
        )
    module = ValueModule(ValueModuleConfig.from_dict(config["module"]))
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise ArtifactError(f"{weights} not found")
    state = load_file(str(weights))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{weights}: missing tensors {missing}, unexpected tensors {unexpected}")
    module = module.to(backbone.device).eval()
    if co_judge and module.config.co_judge:
        from .cojudge import attach_co_judge  # it loads artifacts too

        attach_co_judge(module, backbone.device, backbone.dtype)
    return module
