"""Clocks and memory gauges: per-forward timestamps, a resident-set-size sampler, and CUDA peak memory."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import threading
import time
from typing import Any, Callable

import torch
from torch import nn


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class ForwardClock:
    """Timestamps the end of every forward of `model` (one top-level call per decoding step in every variant), so
    one timed generation also yields its time to first token and its time per token.

    On CUDA each timestamp waits for the GPU (a synchronize after every forward, in every variant alike; both HF's
    and svgt's decoding loops already wait for the GPU once a step to check for stop tokens). On CPU it costs a
    Python call per forward."""

    def __init__(self, model: nn.Module, device: str) -> None:
        self.model, self.cuda = model, str(device).startswith("cuda")
        self.stamps: list[float] = []
        self._handle = None

    def __enter__(self) -> ForwardClock:
        self.stamps = []
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())


def token_times(start: float, stamps: list[float], new_tokens: int) -> tuple[float, list[float]]:
    """(time to first token, seconds per later token). Every variant's last `new_tokens` forwards are the ones whose
    logits give tokens 0..N-1 (earlier forwards, if any, are the prompt alone, before the bridge is inserted)."""
    if len(stamps) < new_tokens:
        raise RuntimeError(f"expected at least {new_tokens} forwards, saw {len(stamps)}")
    ready = stamps[len(stamps) - new_tokens :]
    return ready[0] - start, [b - a for a, b in zip(ready, ready[1:])]


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:  # pragma: no cover - neither /proc nor psutil
            import resource

            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def release_memory() -> None:
    """Give freed memory back to the OS before a measurement, so the baseline is not inflated by a previous variant
    (glibc keeps freed small blocks in its arenas until asked)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if platform.system() == "Linux":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class RssSampler:
    """Samples this process's RSS every `interval` seconds in a thread while active; `peak` is the highest seen.

    `ru_maxrss` cannot be used per variant: it is a high-water mark for the whole process, so after the most
    memory-hungry variant every later one would report the same number."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = _rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def peak_memory(fn: Callable[[], Any], device: str) -> dict[str, float]:
    """Run `fn` once and report its memory: on CUDA `torch.cuda.max_memory_allocated` after a reset (peak and the
    increase over what was allocated before); on CPU the sampled RSS peak and its increase over the RSS just before."""
    release_memory()
    mib = 1024 * 1024
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_mib": peak / mib, "delta_mib": (peak - before) / mib, "method": "cuda_max_memory_allocated"}
    with RssSampler() as sampler:
        fn()
    return {"peak_mib": sampler.peak / mib, "delta_mib": (sampler.peak - sampler.baseline) / mib,
            "method": "rss_sampled_2ms"}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


BUSY_WINDOW_S = 0.5
"""How long `environment` watches the CPUs before a benchmark starts (the benchmark itself is not running yet)."""
UNDER_LOAD = 0.25
"""Share of all CPUs' time that other work may take in that window before timings are marked as taken under load."""


def _cpu_jiffies(stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks summed over all CPUs, from the `cpu` line of /proc/stat's text. Idle and waiting
    for I/O count as not busy; guest time is already inside user time, so it is left out of the total."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + ticks[4]
            return sum(ticks) - idle, sum(ticks)
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def busy_share(before: str, after: str) -> float | None:
    """Share of all CPUs' time spent busy between two readings of /proc/stat (None if no tick passed)."""
    (b0, t0), (b1, t1) = _cpu_jiffies(before), _cpu_jiffies(after)
    return (b1 - b0) / (t1 - t0) if t1 > t0 else None


def cpu_busy_now(window_s: float = BUSY_WINDOW_S, stat_path: str = "/proc/stat") -> float | None:
    """Share of all CPUs' time other work keeps busy right now: /proc/stat read twice, `window_s` apart, while this
    process sleeps. Unlike the 1-minute load average, it does not still carry a job that ended a minute ago.
    None where /proc/stat cannot be read (not Linux)."""
    try:
        with open(stat_path, encoding="ascii") as f:
            before = f.read()
        time.sleep(window_s)
        with open(stat_path, encoding="ascii") as f:
            after = f.read()
        return busy_share(before, after)
    except (OSError, ValueError):
        return None


def environment(device: str) -> dict[str, Any]:
    import transformers

    from .. import __version__

    env: dict[str, Any] = {
        "svgt": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        env["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    busy = cpu_busy_now()
    if busy is not None:
        env["cpu_busy_at_start"] = round(busy, 3)
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return env
