"""The claim verdicts of one (task, model, split) and their tables: markdown for leaderboard.md and
probes.md, JSON for leaderboard.json, a rich table for the terminal; each claim's row, then one row
per comparison with its paired difference and CI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from icl_bench.score.bootstrap import Estimate
from icl_bench.score.paired import ClaimVerdict


@dataclass(frozen=True)
class Verdicts:
    """The claim verdicts of one (task, model, split)."""

    task: str
    model: str
    split: str
    claims: tuple[ClaimVerdict, ...]


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
