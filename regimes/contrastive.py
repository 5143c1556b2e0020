"""Contrastive-Context (the paper's method) and its ablations (SPEC section 2)."""

from dataclasses import dataclass

from icl_bench import Regime, hookimpl
from icl_bench.errors import UsageError
from icl_bench.samplers import OneNear, Paraphrase, Random, Similar


@dataclass(frozen=True)
class Contrastive(Regime):
    """Per instance: random(k) w.p. p_random, similar(k) w.p. p_similar, else one_near(k) whose near slot
    is the target's paraphrase w.p. p_paraphrase (near sampled from the BM25 top_m by score).  A target
    without a paraphrase (its own input) keeps the natural near example: that instance is one_near(k)."""

    p_random: float = 0.2
    p_similar: float = 0.2
    p_paraphrase: float = 0.3
    top_m: int = 16

    def __post_init__(self):
        probs = {"p_random": self.p_random, "p_similar": self.p_similar, "p_paraphrase": self.p_paraphrase}
        for key, value in probs.items():
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"regime {self.name!r}: {key}={value} is not a probability; use 0..1")
        if self.p_random + self.p_similar > 1.0 + 1e-9:
            raise UsageError(f"regime {self.name!r}: p_random + p_similar exceeds 1; lower one of them")
        if self.top_m < 1:
            raise UsageError(f"regime {self.name!r}: top_m={self.top_m} must be at least 1")

    def components(self):
        near = max(0.0, 1.0 - self.p_random - self.p_similar)
        return (
            (self.p_random, Random()),
            (self.p_similar, Similar()),
            (near * (1.0 - self.p_paraphrase), OneNear(top_m=self.top_m)),
            (near * self.p_paraphrase, Paraphrase(fallback=OneNear(top_m=self.top_m))),
        )


@hookimpl
def register_regimes(register):
    register(Contrastive("contrastive", "Contrastive-Context: random / similar / one-near (+ paraphrase)"))
    register(
        Contrastive(
            "random+similar",
            "inter-context contrast only: random or similar contexts",
            p_random=0.5,
            p_similar=0.5,
            p_paraphrase=0.0,
        )
    )
    register(
        Contrastive(
            "contrastive-no-paraphrase", "contrastive without synthetic near examples", p_paraphrase=0.0
        )
    )
    register(
        Contrastive("contrastive-no-similar", "contrastive without natural similar contexts", p_similar=0.0)
    )
