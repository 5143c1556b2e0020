"""The paper's names in one place: the untrained model, the main training regimes and the four
test-context modes, in the order every table shows them; and the task a sweep runs when none is named."""

from __future__ import annotations

BASE = "base"  # the untrained model's results, beside every trained regime's
MAIN_REGIMES = ("zero", "random", "similar", "contrastive")  # `--regimes main`
REGIME_ORDER = (BASE, *MAIN_REGIMES)  # table rows come first in this order, then the others by name
MODE_ORDER = ("random", "similar", "one-near", "paraphrase")  # the test-context modes (SPEC section 3)
DEFAULT_TASK = "mr-offline"  # `icl-bench run`'s task: the candidate issue 21's criteria chose (README)
