"""Built-in metrics: exact match, chrF++ and BLEU (sacrebleu, corpus-level), and COMET (`comet.py`)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property

from icl_bench.core.hookspecs import hookimpl
from icl_bench.core.types import CorpusMetric, Example, Metric
from icl_bench.evaluate.metrics.comet import Comet


class ExactMatch(Metric):
    name = "exact-match"
    description = "1 if the stripped prediction equals the gold output, else 0"

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        return [float(p.strip() == ex.output.strip()) for p, ex in zip(predictions, examples, strict=True)]


class SacreBleuMetric(CorpusMetric):
    """A sacrebleu metric: sentence scores per example, corpus scores from summed segment statistics
    (sacrebleu's own, as its significance tests use them), so a bin's score is its corpus score."""

    scale = 100.0

    @abstractmethod
    def make(self, sentence: bool):
        """A sacrebleu metric object for sentence (True) or corpus (False) scores."""

    @cached_property
    def sentence_scorer(self):
        return self.make(sentence=True)

    @cached_property
    def corpus_scorer(self):
        return self.make(sentence=False)

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        pairs = zip(predictions, examples, strict=True)
        return [self.sentence_scorer.sentence_score(p, [ex.output]).score for p, ex in pairs]

    def statistics(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[list[float]]:
        refs = [[ex.output for ex in examples]]
        stats = self.corpus_scorer._extract_corpus_statistics(list(predictions), refs)
        return [[float(x) for x in row] for row in stats]

    def corpus(self, totals: Sequence[float]) -> float:
        return float(self.corpus_scorer._compute_score_from_stats(list(totals)).score)


class ChrF(SacreBleuMetric):
    name = "chrf"
    description = "chrF++ (sacrebleu, word order 2), 0-100; corpus-level per cell; the offline MT default"

    def make(self, sentence: bool):
        from sacrebleu.metrics import CHRF

        return CHRF(word_order=2)


class Bleu(SacreBleuMetric):
    name = "bleu"
    description = "BLEU (sacrebleu), 0-100; sentence scores smoothed; the copy probe's sim_y"

    def make(self, sentence: bool):
        from sacrebleu.metrics import BLEU

        return BLEU(effective_order=sentence)


@hookimpl
def register_metrics(register) -> None:
    register(ExactMatch())
    register(ChrF())
    register(Bleu())
    register(Comet())
