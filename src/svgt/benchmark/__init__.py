"""Speed benchmark: guided decoding against the backbone's own `generate`, measured in one process.

    from svgt.benchmark import run_benchmark, format_markdown
    result = run_benchmark("smollm2-135m-instruct", quick=True, out_dir="bench-out")
    print(result["ratios"])          # variant -> median over rounds of its time / hf_generate's in that round
    print(result["ratio_ci"])        # variant -> [lo, hi], seeded bootstrap 95% interval of that median

See docs/speed.md for what each variant and number means.
"""

from .models import RANDOM_CONFIGS, RANDOM_PREFIX
from .report import format_markdown
from .runner import run_benchmark
from .variants import ALL_VARIANTS, BASELINE, QUICK_VARIANTS

__all__ = ["ALL_VARIANTS", "BASELINE", "QUICK_VARIANTS", "RANDOM_CONFIGS", "RANDOM_PREFIX", "format_markdown",
           "run_benchmark"]
