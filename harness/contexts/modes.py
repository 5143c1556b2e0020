"""The four test-context modes (SPEC section 3): fixed, so every model is scored on the same contexts."""

from __future__ import annotations

from icl_bench.contexts.samplers import OneNear, Paraphrase, Random, Similar
from icl_bench.core.types import Single

MODES = {
    mode.name: mode
    for mode in (
        Single("random", "k random pool examples", sampler=Random()),
        Single("similar", "top-k pool examples by BM25", sampler=Similar()),
        Single("one-near", "k-1 random + the BM25 top-1, at a random position", sampler=OneNear(top_m=1)),
        Single("paraphrase", "k-1 random + a paraphrase of the target", sampler=Paraphrase()),
    )
}
