"""Built-in metrics: exact match, chrF++ and sentence BLEU (sacrebleu), and COMET (`comet.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from icl_bench.hookspecs import hookimpl
from icl_bench.metrics.comet import Comet
from icl_bench.types import Example, Metric


class ExactMatch(Metric):
    name = "exact-match"
    description = "1 if the stripped prediction equals the gold output, else 0"

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        return [float(p.strip() == ex.output.strip()) for p, ex in zip(predictions, examples, strict=True)]


class ChrF(Metric):
    name = "chrf"
    description = "sentence chrF++ (sacrebleu, word order 2), 0-100; the offline MT default"
    scale = 100.0

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        from sacrebleu.metrics import CHRF

        chrf = CHRF(word_order=2)
        return [
            chrf.sentence_score(p, [ex.output]).score for p, ex in zip(predictions, examples, strict=True)
        ]


class Bleu(Metric):
    name = "bleu"
    description = "sentence BLEU (sacrebleu, exponential smoothing), 0-100; the copy probe's sim_y"
    scale = 100.0

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        from sacrebleu.metrics import BLEU

        bleu = BLEU(effective_order=True)
        return [
            bleu.sentence_score(p, [ex.output]).score for p, ex in zip(predictions, examples, strict=True)
        ]


@hookimpl
def register_metrics(register) -> None:
    register(ExactMatch())
    register(ChrF())
    register(Bleu())
    register(Comet())
