"""`python -m svgt VERB ...`, the same as the `svgt` command; also what `accelerate launch -m svgt train ...` runs."""

import sys

from .cli import main

sys.exit(main())
