"""Stage: probes.  IWL, ICL and blind-copy scores over training snapshots (SPEC sections 4 and 8).

Probe contexts are built once per task and seed, a store artifact like the test contexts: for each of the
first N examples x of the task's first evaluation split (N: the size preset's `probe_examples`),

    random      k random pool examples: exactly the `random` test mode's context
    empty       no examples
    paraphrase  C = k-1 random + x's paraphrase at position i*: exactly the `paraphrase` test mode's
    deranged    C with its labels deranged (no position keeps its own label), seeded per target

Every model state (the base model as step 0, then every snapshot of every trained regime) predicts all
four, and per example

    IWL   = sim_y(M(x | random), M(x | empty))
    ICL   = sum_i w_i sim_y(M(x | C), y_i),  w_i = max(sim_x(x, x_i), 0) / sum_j max(sim_x(x, x_j), 0)
    copy  = max over j in O of copy_j
    copy_j = max(0, s(M(x | C deranged), y'_j) - s(y*, y'_j)) / (1 - s(y*, y'_j))   (clipped to 1)

with s = BLEU / 100 and y'_j the label at j in C deranged.  O, the "other" slots, are those whose label
y'_j is none of: y'_{i*} (the label now attached to x~, which pure ICL copies), the gold y* (the
in-weights answer) and the paraphrase's own label y~ (equal to y* for MT and classification paraphrases;
for synthetic-alignment a label of x*'s own symbols), nor scores s(y*, y'_j) = 1 (the division's guard).
copy_j is the similarity to y'_j in excess of what the gold answer itself has, rescaled so an exact copy
of y'_j scores 1: a correct structured answer shares n-grams with other labels (an MTOP parse with the
same intent, `[IN:GET_WEATHER [SL:LOCATION Paris ] ]` vs `... London ] ]`, has BLEU/100 0.79; two SQL
queries 0.23), so raw BLEU would score the in-weights answer as copying.  With the excess, a prediction
equal to y* scores exactly 0 on every task and only a blind copier scores.  Where O is empty or C holds
fewer than 3 distinct labels (two-label classification: every wrong answer is some slot's label), the
copy score is not defined for that example (None): it is left out of the mean, the bootstrap and the
claims, and counted.  A task where most probe examples are undefined reports the copy probe as "not
defined" (markdown, JSON, terminal and plot) and P3 is "not run" with the reason in its statement.

sim_y is `Task.output_similarity`, sim_x the dot product of `Task.embed` vectors (cosines, clipped at 0
so the weights are a convex combination; all zero: uniform weights).  The per-example values give each
state's mean a bootstrap CI and make the claims P1-P3 paired verdicts (`claims.judge`, series =
`regime@step`, group = probe).  The scores are functions of predictions, so any predictor can stand in
for the model.  Predictions of each (model, snapshot) are store artifacts, so a rerun computes nothing.

    out/probes.md     a table per (task, model): regime x step x probe, `mean [lo, hi]`; the verdicts
    out/probes.json   the same cells, the verdicts and every per-example value
    out/probes.png    one panel per probe, one curve per regime over training steps (the paper's Fig. 4)

The package, in the order the stage runs: `contexts` (the probe items and their store artifact), `scores`
(IWL, ICL, copy from predictions), `claims` (model states, probe values, P1-P3), `outputs` (cells,
verdicts, the md/json/png and terminal tables), `stage` (`probe_stage`, predictions through the store).
"""

from icl_bench.analyses.probes.claims import Probed, State, probe_claims, series
from icl_bench.analyses.probes.contexts import (
    DIGITS,
    PROMPTS,
    VERSION,
    ProbeItem,
    build_probe_contexts,
    check_task,
    derangement,
    icl_weights,
    item_record,
    probe_items,
    read_items,
)
from icl_bench.analyses.probes.outputs import (
    DECIMALS,
    FILES,
    Report,
    copy_note,
    json_text,
    markdown,
    plot_png,
    render,
    report,
    rich_tables,
    show,
    write_probes,
)
from icl_bench.analyses.probes.scores import (
    LABELS,
    MIN_LABELS,
    NOT_DEFINED,
    PROBES,
    copy_score,
    copy_slots,
    defined_for_task,
    other_slots,
    predict,
    score,
)
from icl_bench.analyses.probes.stage import Probe, preflight, probe_stage

__all__ = [
    "DECIMALS",
    "DIGITS",
    "FILES",
    "LABELS",
    "MIN_LABELS",
    "NOT_DEFINED",
    "PROBES",
    "PROMPTS",
    "VERSION",
    "Probe",
    "ProbeItem",
    "Probed",
    "Report",
    "State",
    "build_probe_contexts",
    "check_task",
    "copy_note",
    "copy_score",
    "copy_slots",
    "defined_for_task",
    "derangement",
    "icl_weights",
    "item_record",
    "json_text",
    "markdown",
    "other_slots",
    "plot_png",
    "predict",
    "preflight",
    "probe_claims",
    "probe_items",
    "probe_stage",
    "read_items",
    "render",
    "report",
    "rich_tables",
    "score",
    "series",
    "show",
    "write_probes",
]
