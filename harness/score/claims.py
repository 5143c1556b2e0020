"""The paper's claims (SPEC sections 7 and 8), judged by paired comparisons.

Every model of a task is scored on the same (test example, mode) records, so regimes are compared
PAIRED: a comparison is a linear contrast of means, sum_t coef_t * mean(series_t over group_t), tested
against zero.  Its 95% CI is a percentile bootstrap that resamples test EXAMPLES: all of an example's
records (every mode, every group, every series) move together, so a contrast that spans groups (C2)
stays paired too.  A series is anything scored on shared examples: a regime here, a (regime, snapshot)
for the probe claims.

    scores = {("zero", "Low"): {("t1", "random"): 0.5, ...}, ("base", "Low"): {...}}
    outcome(Comparison("zero > base in Low", (Term("zero", "Low"), Term("base", "Low", -1)), ">"), scores)

This module is the public API (`icl_bench.claims`): the comparison engine lives in
`icl_bench.score.paired`, the verdict tables in `icl_bench.score.verdicts`; both are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from icl_bench.core.names import BASE
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.score import paired
from icl_bench.score.baselines import ORDER
from icl_bench.score.bins import bin_of
from icl_bench.score.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap, Corpus, Estimate, contrast
from icl_bench.score.paired import (
    VERDICTS,
    Claim,
    ClaimVerdict,
    Comparison,
    Outcome,
    Relation,
    Scores,
    Term,
    Verdict,
    better,
    combine,
    outcome,
    verdict,
)
from icl_bench.score.schema import Record
from icl_bench.score.summary import baseline_key
from icl_bench.score.verdicts import HEADER, STYLE, Verdicts, as_json, markdown, rich_table, table_rows

__all__ = [
    "FINE_TUNED_EXCLUDED",
    "HEADER",
    "MARGIN",
    "STYLE",
    "VERDICTS",
    "Claim",
    "ClaimVerdict",
    "Comparison",
    "Estimate",
    "Outcome",
    "Relation",
    "Scores",
    "Term",
    "Verdict",
    "Verdicts",
    "as_json",
    "better",
    "combine",
    "contrast",
    "estimate",
    "judge",
    "markdown",
    "outcome",
    "paper_claims",
    "record_scores",
    "rich_table",
    "table_rows",
    "task_verdicts",
    "verdict",
]


def judge(
    claims: Sequence[Claim],
    scores: Scores,
    margin: float = 0.0,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
    *,
    bootstrap: Bootstrap | None = None,
) -> list[ClaimVerdict]:
    """Every claim's comparisons on `scores`, and each claim's combined verdict.  The signature plugins
    are written against (`icl_bench.claims.judge`); `bootstrap` stands for resamples, level and seed."""
    return paired.judge(claims, scores, margin, bootstrap or Bootstrap(resamples, level, seed), corpus)


def estimate(
    comparison: Comparison,
    scores: Scores,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
    *,
    bootstrap: Bootstrap | None = None,
) -> Estimate | None:
    """The paired contrast of `comparison` with its CI (`paired.estimate`), in the public signature."""
    return paired.estimate(comparison, scores, bootstrap or Bootstrap(resamples, level, seed), corpus)


MARGIN = 0.01  # ">=" holds when the CI's lower end > -MARGIN x the metric's scale (SPEC 7, a choice)

FINE_TUNED_EXCLUDED = (BASE, "contrastive")  # C5 compares contrastive with every other fine-tuned regime


def paper_claims(regimes: Iterable[str], baselines: Sequence[str] = ()) -> list[Claim]:
    """C1-C5 and A1-A4 of SPEC section 7; C5's comparisons are against every other fine-tuned regime
    in `regimes` (the ones that ran); C1 also against every trivial baseline in `baselines` (beating
    the best of them is beating each)."""
    others = sorted(r for r in set(regimes) if r not in FINE_TUNED_EXCLUDED)
    erosion = Comparison(
        "(zero - base) in High < (zero - base) in Low",
        (Term("zero", "High"), Term("base", "High", -1), Term("zero", "Low", -1), Term("base", "Low")),
        "<",
    )
    return [
        Claim(
            "C1",
            "fine-tuning learns the task in weights (beats base and every trivial baseline)",
            tuple(better("zero", x, "Low") for x in ("base", *baselines)),
        ),
        Claim("C2", "standard fine-tuning erodes ICL", (erosion,)),
        Claim(
            "C2s", "C2, strict form: zero-context falls below base", (better("zero", "base", "High", "<"),)
        ),
        Claim(
            "C3",
            "random-context training cannot use related examples",
            (better("random", "zero", "High", "<"),),
        ),
        Claim(
            "C4",
            "similar-context training hurts unrelated targets",
            tuple(better("similar", x, "Low", "<") for x in ("zero", "random", "contrastive")),
        ),
        Claim(
            "C5",
            "contrastive is best where related examples exist, no worse where none do",
            (
                *(better("contrastive", x, "High", ">=") for x in others),
                better("contrastive", "zero", "Low", ">="),
            ),
        ),
        Claim(
            "A1",
            "paraphrases help in High (D.2)",
            (better("contrastive-no-paraphrase", "contrastive", "High", "<"),),
        ),
        Claim(
            "A2",
            "natural similar contexts help in Medium (D.2)",
            (better("contrastive-no-similar", "contrastive", "Medium", "<"),),
        ),
        Claim(
            "A3",
            "augmenting the pool is not contrast (D.4)",
            (
                better("similar-augmented", "similar", "High"),
                better("similar-augmented", "contrastive", "Low", "<"),
            ),
        ),
        Claim(
            "A4",
            "contrast within a context matters in High (D.3)",
            (better("random+similar", "contrastive", "High", "<"),),
        ),
    ]


def record_scores(
    records: Iterable[Record], edges: tuple[float, float], statistics: bool = False
) -> dict[tuple[str, str, str, str], dict]:
    """(model, split, regime, group) -> {(example id, mode): score (or the record's statistics)}, groups
    being the similarity bins (Low / Medium / High) and "all"."""
    grouped: dict[tuple[str, str, str, str], dict] = {}
    for r in records:
        groups = ["all"]
        if r.max_sim is not None and not math.isnan(r.max_sim):
            groups.append(bin_of(r.max_sim, edges))
        for group in groups:
            value = r.stats if statistics else r.score
            grouped.setdefault((r.model, r.split, r.regime, group), {})[(r.id, r.mode)] = value
    return grouped


def task_verdicts(
    task: str,
    records: Sequence[Record],
    edges: tuple[float, float],
    margin: float = MARGIN,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> list[Verdicts]:
    """The paper's claims judged per (model, split) of one task's records (sorted by model, split);
    with `corpus`, on the corpus scores of the records' statistics.  Trivial-baseline records (model
    `baseline`) are references: C1 compares `zero` with each, paired on the same records, and always
    with `majority` and `copy-nearest` (not run, so C1 cannot hold, when their records are missing)."""
    grouped = record_scores(records, edges, statistics=corpus is not None)
    out = []
    for model, split in sorted({(m, s) for m, s, _, _ in grouped if m != BASELINE_MODEL}):
        scores = {
            (regime, group): v for (m, s, regime, group), v in grouped.items() if (m, s) == (model, split)
        }
        ran = {regime for regime, _ in scores}
        references = {
            (name, group): v
            for (m, s, name, group), v in grouped.items()
            if (m, s) == (BASELINE_MODEL, split)
        }
        # C1 always names the harness's own baselines: results without them cannot show learning
        baselines = sorted({*ORDER, *(name for name, _ in references)}, key=baseline_key)
        claimed = paper_claims(ran, baselines)
        judged = paired.judge(claimed, {**references, **scores}, margin, bootstrap, corpus)
        out.append(Verdicts(task, model, split, tuple(judged)))
    return out
