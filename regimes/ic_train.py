"""IC-Train regimes with one sampler each (SPEC section 2): zero, random, similar, similar-augmented."""

from icl_bench import Single, hookimpl
from icl_bench.samplers import Empty, Random, Similar


@hookimpl
def register_regimes(register):
    register(Single("zero", "standard fine-tuning: no context", sampler=Empty()))
    register(Single("random", "k random pool examples", sampler=Random()))
    register(
        Single("similar", "top-k pool examples by BM25 (min_mean_sim filter optional)", sampler=Similar())
    )
    register(
        Single(
            "similar-augmented",
            "similar, on a pool augmented with every target's paraphrase (ablation D.4)",
            sampler=Similar(),
            augment_pool=True,
        )
    )
