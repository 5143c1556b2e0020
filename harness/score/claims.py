"""Paired comparisons and the paper's claims (SPEC sections 7 and 8).

Every model of a task is scored on the same (test example, mode) records, so regimes are compared
PAIRED: a comparison is a linear contrast of means, sum_t coef_t * mean(series_t over group_t), tested
against zero.  Its 95% CI is a percentile bootstrap that resamples test EXAMPLES: all of an example's
records (every mode, every group, every series) move together, so a contrast that spans groups (C2)
stays paired too.  A series is anything scored on shared examples: a regime here, a (regime, snapshot)
for the probe claims.

    scores = {("zero", "Low"): {("t1", "random"): 0.5, ...}, ("base", "Low"): {...}}
    outcome(Comparison("zero > base in Low", (Term("zero", "Low"), Term("base", "Low", -1)), ">"), scores)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from icl_bench.core.errors import UsageError
from icl_bench.core.names import BASE
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.score.baselines import ORDER
from icl_bench.score.bootstrap import Bootstrap, Corpus, Estimate, contrast
from icl_bench.score.results import Record, baseline_key, bin_of

VERDICTS = ("holds", "contradicted", "inconclusive", "not run")
MARGIN = 0.01  # ">=" holds when the CI's lower end > -MARGIN x the metric's scale (SPEC 7, a choice)

Relation = Literal[">", "<", ">="]
Verdict = Literal["holds", "contradicted", "inconclusive", "not run"]
# (series, group) -> {(example id, record key): score, or a corpus metric's statistics}
Scores = Mapping[tuple[str, str], Mapping[tuple[str, Hashable], Any]]


@dataclass(frozen=True)
class Term:
    """`coef` x the mean score of `series` over the records of `group`."""

    series: str
    group: str
    coef: float = 1.0


@dataclass(frozen=True)
class Comparison:
    """The contrast sum(coef x mean) compared with 0 by `relation`; `text` says it in words."""

    text: str
    terms: tuple[Term, ...]
    relation: Relation = ">"

    @property
    def series(self) -> frozenset[str]:
        return frozenset(t.series for t in self.terms)


def better(a: str, b: str, group: str, relation: Relation = ">") -> Comparison:
    """`a REL b in group`: the paired difference mean(a) - mean(b) over the group's records."""
    return Comparison(f"{a} {relation} {b} in {group}", (Term(a, group), Term(b, group, -1.0)), relation)


@dataclass(frozen=True)
class Outcome:
    comparison: Comparison
    estimate: Estimate | None  # None: a series did not run
    verdict: Verdict


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    outcomes: tuple[Outcome, ...]
    verdict: Verdict


def verdict(lo: float, hi: float, relation: Relation, margin: float = 0.0) -> Verdict:
    """holds / contradicted / inconclusive for a CI [lo, hi] of the contrast (SPEC 7).

    `>`: holds when lo > 0, contradicted when hi < 0.  `<`: the mirror image.  `>=` (non-inferiority):
    holds when lo > -margin, contradicted when hi < -margin (the whole CI beyond the margin).
    """
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if relation == ">":
        return "holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if relation == "<":
        return "holds" if hi < 0 else "contradicted" if lo > 0 else "inconclusive"
    if relation == ">=":
        return "holds" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    raise UsageError(f"unknown relation {relation!r}; use >, < or >=")


def estimate(
    comparison: Comparison,
    scores: Scores,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
) -> Estimate | None:
    """The paired contrast and its CI, or None when a (series, group) it needs has no scores at all.

    Within a group only the records every series of that group scored are used (the pairing).  The
    examples with such records are resampled with replacement `resamples` times (numpy
    `default_rng(seed)`); a resample's group mean is the ratio of its records' score sum to their
    count, so examples with more records in a group weigh more, exactly as in the plain mean.  With
    `corpus`, the scores are statistics vectors and a group's value is `corpus` of their sum.
    """
    config = Bootstrap(resamples, level, seed)
    if any((t.series, t.group) not in scores for t in comparison.terms):
        return None
    shared = {}
    for group in sorted({t.group for t in comparison.terms}):
        keys = [set(scores[(t.series, group)]) for t in comparison.terms if t.group == group]
        shared[group] = set.intersection(*keys)
    examples = sorted({example for keys in shared.values() for example, _ in keys})
    if not examples:
        return Estimate(math.nan, math.nan, math.nan, 0)
    row = {example: i for i, example in enumerate(examples)}
    first = next(scores[(t.series, t.group)][key] for t in comparison.terms for key in shared[t.group])
    width = 1 if corpus is None else len(first)  # type: ignore[arg-type]
    sums = np.zeros((len(comparison.terms), len(examples), width))
    counts = np.zeros((len(comparison.terms), len(examples)))
    for t, term in enumerate(comparison.terms):
        for key in shared[term.group]:
            sums[t, row[key[0]]] += scores[(term.series, term.group)][key]
            counts[t, row[key[0]]] += 1
    return contrast(sums, counts, [t.coef for t in comparison.terms], config, corpus)


def outcome(
    comparison: Comparison,
    scores: Scores,
    margin: float = 0.0,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
) -> Outcome:
    found = estimate(comparison, scores, resamples, level, seed, corpus)
    if found is None:
        return Outcome(comparison, None, "not run")
    return Outcome(comparison, found, verdict(found.lo, found.hi, comparison.relation, margin))


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """A claim of several comparisons (SPEC 7): not run if none ran, contradicted if any is, holds when
    all hold (a comparison that did not run is not a comparison that held), else inconclusive."""
    verdicts = list(verdicts)
    if all(v == "not run" for v in verdicts):
        return "not run"
    if "contradicted" in verdicts:
        return "contradicted"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


def judge(
    claims: Sequence[Claim],
    scores: Scores,
    margin: float = 0.0,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
) -> list[ClaimVerdict]:
    """Every claim's comparisons on `scores`, and each claim's combined verdict."""
    judged = []
    for claim in claims:
        outcomes = tuple(
            outcome(c, scores, margin, resamples, level, seed, corpus) for c in claim.comparisons
        )
        judged.append(ClaimVerdict(claim, outcomes, combine(o.verdict for o in outcomes)))
    return judged


# --- the paper's claims on a task's records (SPEC 7) ----------------------------------------------------

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


@dataclass(frozen=True)
class Verdicts:
    """The claim verdicts of one (task, model, split)."""

    task: str
    model: str
    split: str
    claims: tuple[ClaimVerdict, ...]


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
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
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
        judged = judge(claimed, {**references, **scores}, margin, resamples, level, seed, corpus)
        out.append(Verdicts(task, model, split, tuple(judged)))
    return out


# --- the verdict tables -----------------------------------------------------------------------------------


def _difference(found: Estimate | None, decimals: int) -> str:
    if found is None or math.isnan(found.value):
        return "-"
    d = decimals
    if math.isnan(found.lo):
        return f"{found.value:+.{d}f}"
    return f"{found.value:+.{d}f} [{found.lo:+.{d}f}, {found.hi:+.{d}f}]"


def table_rows(judged: Sequence[ClaimVerdict], decimals: int) -> list[tuple[str, str, str, str]]:
    """(claim id, text, difference [CI], verdict) rows: a claim's row (id, statement, "", its verdict),
    then one row per comparison ("", comparison, difference, verdict)."""
    rows = []
    for item in judged:
        rows.append((item.claim.id, item.claim.statement, "", item.verdict))
        rows += [("", o.comparison.text, _difference(o.estimate, decimals), o.verdict) for o in item.outcomes]
    return rows


HEADER = ("claim", "statement / comparison", "difference [95% CI]", "verdict")


def markdown(verdicts: Sequence[Verdicts], decimals: int, margin: float) -> list[str]:
    """The Claims section of one task: a table per (model, split)."""
    lines = [
        "",
        "### Claims",
        "",
        "Paired differences (the same test records for both sides; 1000 bootstrap resamples of test "
        "examples, seed 0). `>`/`<`: holds when the CI excludes 0 on the claimed side, contradicted when it "
        f"excludes 0 on the other; `>=`: holds when the CI's lower end > -{margin:g}, contradicted when its "
        f"upper end < -{margin:g}. The claims are the Contrastive-Context paper's (SPEC section 7).",
    ]
    for v in verdicts:
        if len(verdicts) > 1:
            lines += ["", f"#### {v.model}, split `{v.split}`"]
        lines += ["", "| " + " | ".join(HEADER) + " |", "|:--|:--|--:|:--|"]
        for claim, text, difference, said in table_rows(v.claims, decimals):
            cells = (
                (f"**{claim}**", f"**{text}**", "", f"**{said}**") if claim else ("", text, difference, said)
            )
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def as_json(verdicts: Sequence[Verdicts], digits: int) -> list[dict]:
    def number(x: float) -> float | None:
        return None if math.isnan(x) else round(x, digits)

    return [
        {
            "model": v.model,
            "split": v.split,
            "claims": [
                {
                    "id": item.claim.id,
                    "statement": item.claim.statement,
                    "verdict": item.verdict,
                    "comparisons": [
                        {
                            "comparison": o.comparison.text,
                            "relation": o.comparison.relation,
                            "verdict": o.verdict,
                            **(
                                {}
                                if o.estimate is None
                                else {
                                    "difference": number(o.estimate.value),
                                    "lo": number(o.estimate.lo),
                                    "hi": number(o.estimate.hi),
                                    "examples": o.estimate.examples,
                                }
                            ),
                        }
                        for o in item.outcomes
                    ],
                }
                for item in v.claims
            ],
        }
        for v in verdicts
    ]


STYLE = {"holds": "green", "contradicted": "red", "inconclusive": "yellow", "not run": "dim"}


def rich_table(v: Verdicts, metric: str, decimals: int):
    """One (task, model, split)'s verdicts as a rich Table that fits 80 columns (statements wrap)."""
    from rich.markup import escape
    from rich.table import Table

    title = f"claims: {v.task}, {v.model}, split {v.split} ({metric})"
    table = Table(title=escape(title), title_justify="left")
    table.add_column(HEADER[0], no_wrap=True)
    table.add_column(HEADER[1], overflow="fold")
    table.add_column(HEADER[2], justify="right", no_wrap=True)
    table.add_column(HEADER[3], no_wrap=True)
    for claim, text, difference, said in table_rows(v.claims, decimals):
        marked = f"[{STYLE[said]}]{said}[/]"
        if claim:
            table.add_row(f"[bold]{claim}[/]", f"[bold]{escape(text)}[/]", "", f"[bold]{marked}[/]")
        else:
            table.add_row("", escape(text), escape(difference), marked)
    return table
