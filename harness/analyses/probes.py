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
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icl_bench import models
from icl_bench.contexts.build import (
    ContextConfig,
    data_fingerprint,
    evaluation_splits,
    instance_rng,
    load_pool,
    mode_context,
    paraphrasers_of,
)
from icl_bench.contexts.modes import MODES
from icl_bench.contexts.pool import NoParaphrase, Pool
from icl_bench.core import numerics, plugins
from icl_bench.core.embeddings import MINILM, keep_embeddings
from icl_bench.core.errors import UsageError
from icl_bench.core.names import BASE
from icl_bench.core.progress import console
from icl_bench.core.store import Store, read_jsonl, write_atomic, write_jsonl
from icl_bench.core.types import Example, Task
from icl_bench.score import claims
from icl_bench.score.results import cell

if TYPE_CHECKING:
    from icl_bench.sweep.plan import Plan

VERSION = 1
PROBES = ("iwl", "icl", "copy")
LABELS = {"iwl": "IWL", "icl": "ICL", "copy": "copy"}
PROMPTS = ("random", "empty", "paraphrase", "deranged")
FILES = ("probes.md", "probes.json", "probes.png")
DIGITS = 6  # decimals kept in the json
DECIMALS = 3  # shown in tables
MIN_LABELS = 3  # distinct labels C needs for the copy probe to tell ICL, IWL and blind copying apart
NOT_DEFINED = "not defined"


# --- probe contexts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeItem:
    """One probe example: its four contexts (by PROMPTS name), their prompts, the paraphrase's position
    i* in C (and in C deranged) and the ICL weights w_i over C."""

    split: str
    target: Example
    contexts: Mapping[str, tuple[Example, ...]]
    prompts: Mapping[str, str]
    near: int
    weights: tuple[float, ...]


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of range(n) without fixed points (by rejection; n >= 2)."""
    if n < 2:
        raise UsageError(f"a derangement needs at least 2 positions, got {n}; raise --k")
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def icl_weights(sims: Sequence[float]) -> tuple[float, ...]:
    """w_i = max(s_i, 0) / sum_j max(s_j, 0); uniform when no similarity is positive."""
    clipped = [max(float(s), 0.0) for s in sims]
    total = sum(clipped)
    if total <= 0:
        return tuple(1.0 / len(clipped) for _ in clipped)
    return tuple(s / total for s in clipped)


def probe_items(task: Task, pool: Pool, config: ContextConfig, examples: int) -> list[ProbeItem]:
    """The probe contexts of the first `examples` examples of the task's first evaluation split, less
    those without a paraphrase (as in the `paraphrase` test mode: there is no C for them)."""
    check_task(task, config.k)
    split = evaluation_splits(task)[0]
    built = []
    for target in task.load(split)[:examples]:
        shuffled = mode_context(task, pool, MODES["random"], config, target).examples
        try:
            paraphrased = mode_context(task, pool, MODES["paraphrase"], config, target)
        except NoParaphrase:
            continue
        assert paraphrased.near is not None
        order = derangement(len(paraphrased.examples), instance_rng(config, task, "probe:derange", 0, target))
        deranged = tuple(
            replace(ex, output=paraphrased.examples[j].output)
            for ex, j in zip(paraphrased.examples, order, strict=True)
        )
        contexts = {"random": shuffled, "empty": (), "paraphrase": paraphrased.examples, "deranged": deranged}
        built.append((target, contexts, paraphrased.near))
    texts = sorted({t.input for t, _, _ in built} | {ex.input for _, c, _ in built for ex in c["paraphrase"]})
    vectors = task.embed(texts) if texts else np.zeros((0, 1))
    row = {text: i for i, text in enumerate(texts)}
    items = []
    for target, contexts, near in built:
        sims = vectors[[row[ex.input] for ex in contexts["paraphrase"]]] @ vectors[row[target.input]]
        prompts = {name: task.prompt(contexts[name], target) for name in PROMPTS}
        items.append(ProbeItem(split, target, contexts, prompts, near, icl_weights(sims.tolist())))
    return items


def check_task(task: Task, k: int) -> None:
    """The probes need a paraphraser (the ICL and copy contexts) and k >= 2 (a derangement)."""
    if not task.paraphraser:
        raise UsageError(
            f"task {task.name!r} has no paraphraser: the ICL and copy probes need one; "
            "set the task's paraphraser or probe another task"
        )
    if k < 2:
        raise UsageError(
            f"the copy probe deranges the context's labels, so it needs k >= 2, not {k}; pass --k 2"
        )


def _example(ex: Example) -> dict[str, Any]:
    return {"id": ex.id, "input": ex.input, "output": ex.output, "meta": dict(ex.meta)}


def _from(data: Mapping[str, Any]) -> Example:
    return Example(data["id"], data["input"], data["output"], data.get("meta", {}))


def item_record(item: ProbeItem) -> dict[str, Any]:
    return {
        "split": item.split,
        "id": item.target.id,
        "target": _example(item.target),
        "contexts": {name: [_example(ex) for ex in item.contexts[name]] for name in PROMPTS},
        "prompts": dict(item.prompts),
        "near": item.near,
        "weights": [round(w, DIGITS) for w in item.weights],
    }


def read_items(folder: Path) -> list[ProbeItem]:
    return [
        ProbeItem(
            r["split"],
            _from(r["target"]),
            {name: tuple(_from(ex) for ex in r["contexts"][name]) for name in PROMPTS},
            r["prompts"],
            r["near"],
            tuple(r["weights"]),
        )
        for r in read_jsonl(folder / "probes.jsonl")
    ]


def build_probe_contexts(task: Task, config: ContextConfig, store: Store, examples: int) -> Path:
    """The probe-contexts artifact of (task data, paraphrasers, context config, N), built once."""
    check_task(task, config.k)
    keep_embeddings(store.root / "embeddings" / MINILM)
    inputs = {
        "task": task.name,
        "data": data_fingerprint(task),
        "config": config.key(),
        "paraphrasers": [f"{p.name}@{p.version}" for p in paraphrasers_of(task, config)],
        "examples": examples,
        "version": VERSION,
    }
    if not store.has("probe-contexts", inputs):
        pool = load_pool(task, config, store)
        with store.writing("probe-contexts", inputs) as folder:
            write_jsonl(folder / "probes.jsonl", map(item_record, probe_items(task, pool, config, examples)))
    return store.folder("probe-contexts", inputs)


# --- scores -----------------------------------------------------------------------------------------


def other_slots(labels: Sequence[str], near: int, paraphrase_label: str, gold: str) -> tuple[int, ...] | None:
    """O: the slots of C deranged (`labels`: y'_j by position) whose label is none of y'_{i*} (`near`),
    y* (`gold`) and y~ (`paraphrase_label`), labels compared stripped; None where the copy score is not
    defined: fewer than MIN_LABELS distinct labels, or O empty."""
    stripped = [label.strip() for label in labels]
    if len(set(stripped)) < MIN_LABELS:
        return None
    ruled_out = {stripped[near], gold.strip(), paraphrase_label.strip()}
    found = tuple(j for j, label in enumerate(stripped) if label not in ruled_out)
    return found or None


def copy_slots(item: ProbeItem) -> tuple[int, ...] | None:
    """The copy probe's other slots O of one probe item (None: not defined for it)."""
    labels = [ex.output for ex in item.contexts["deranged"]]
    paraphrase_label = item.contexts["paraphrase"][item.near].output
    return other_slots(labels, item.near, paraphrase_label, item.target.output)


def copy_score(prediction: str, others: Sequence[Example], gold: str) -> float | None:
    """max over the other slots' examples of copy_j = max(0, s(prediction, y'_j) - s(y*, y'_j)) /
    (1 - s(y*, y'_j)), s = BLEU / 100, y* = `gold`, clipped to 1: the similarity in excess of the gold
    answer's, so y* scores 0 and an exact copy of y'_j scores 1.  A slot with s(y*, y'_j) = 1 is not in
    O; None where no slot is left."""
    bleu = plugins.metrics["bleu"]
    found = bleu([prediction] * len(others), others)
    baseline = bleu([gold] * len(others), others)
    top = bleu.scale * (1 - 1e-9)  # sacrebleu's exact match is 100 up to rounding, either side
    excess = [(s - g) / (bleu.scale - g) for s, g in zip(found, baseline, strict=True) if g < top]
    return min(1.0, max(0.0, *excess)) if excess else None


def defined_for_task(undefined: int, examples: int) -> bool:
    """The copy probe is defined for a task unless most (over half) of its probe examples are undefined."""
    return 2 * undefined <= examples


def score(task: Task, items: Sequence[ProbeItem], predictions: Mapping[str, Sequence[str]]) -> dict:
    """Per-example IWL, ICL and copy values ({probe: [value per item]}) of one model state, from its
    predictions under each probe context ({PROMPTS name: [prediction per item]}); a copy value is None
    where the copy score is not defined for the item."""
    for name in PROMPTS:
        if len(predictions[name]) != len(items):
            raise ValueError(f"{len(predictions[name])} {name} predictions for {len(items)} probe items")
    iwl: list[float] = []
    icl: list[float] = []
    copy: list[float | None] = []
    for i, item in enumerate(items):
        alone = replace(item.target, output=predictions["empty"][i])
        iwl.append(task.output_similarity(predictions["random"][i], alone))
        guess = predictions["paraphrase"][i]
        icl.append(
            sum(
                w * task.output_similarity(guess, ex)
                for w, ex in zip(item.weights, item.contexts["paraphrase"], strict=True)
            )
        )
        slots = copy_slots(item)
        if slots is None:
            copy.append(None)
        else:
            others = [item.contexts["deranged"][j] for j in slots]
            copy.append(copy_score(predictions["deranged"][i], others, item.target.output))
    return {"iwl": iwl, "icl": icl, "copy": copy}


def predict(
    model, tokenizer, task: Task, items: Sequence[ProbeItem], batch_size: int
) -> dict[str, list[str]]:
    """A real model's predictions under every probe context, in one batched generation."""
    from icl_bench.models import generate

    prompts = [item.prompts[name] for name in PROMPTS for item in items]
    outputs = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=task.generation.max_new_tokens,
        batch_size=batch_size,
        stop=task.generation.stop,
    )
    n = len(items)
    return {name: outputs[i * n : (i + 1) * n] for i, name in enumerate(PROMPTS)}


# --- the claims (SPEC 8) ----------------------------------------------------------------------------


def series(regime: str, step: int | None) -> str:
    """A model state's name in the claims: `regime@step` (`regime@last` for a regime that did not run)."""
    return f"{regime}@{'last' if step is None else step}"


def _contrast(a: str, b: str, probe: str, relation: claims.Relation) -> claims.Comparison:
    terms = (claims.Term(a, probe), claims.Term(b, probe, -1.0))
    return claims.Comparison(f"{LABELS[probe]}: {a} {relation} {b}", terms, relation)


def probe_claims(last: Mapping[str, int], copy_defined: bool = True) -> list[claims.Claim]:
    """P1-P3 at each regime's last snapshot (`last`: regime -> its last step).  P2's first checkpoint is
    step 0, the base model, and "does not decrease by more than its CI" is the non-inferiority test
    ICL(contrastive, last) - ICL(base) >= -margin (the claims machinery's `>=`).  Where the copy probe is
    not defined for the task (`copy_defined` False), P3's statement says so; its scores are left out, so
    it is "not run"."""

    def at(regime: str) -> str:
        return series(regime, last.get(regime))

    first = series(BASE, 0)
    return [
        claims.Claim(
            "P1",
            "similar-context training learns less in weights",
            (
                _contrast(at("similar"), at("random"), "iwl", "<"),
                _contrast(at("similar"), at("contrastive"), "iwl", "<"),
            ),
        ),
        claims.Claim(
            "P2",
            "random-context training loses ICL over training; contrastive keeps it",
            (_contrast(at("random"), first, "icl", "<"), _contrast(at("contrastive"), first, "icl", ">=")),
        ),
        claims.Claim(
            "P3",
            "similar-context training copies labels blindly"
            + ("" if copy_defined else f" (not run: the copy probe is {NOT_DEFINED} on this task)"),
            (
                _contrast(at("similar"), at("contrastive"), "copy", ">"),
                _contrast(at("similar"), at("random"), "copy", ">"),
            ),
        ),
    ]


# --- the stage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A model state: the base model (regime `base`, step 0, no folder) or a regime's snapshot."""

    regime: str
    step: int
    folder: Path | None = None

    @property
    def name(self) -> str:
        return series(self.regime, self.step)


@dataclass(frozen=True)
class Probed:
    """The probe values of one (task, model): per state, per probe, per item (in `ids` order)."""

    task: str
    model: str
    split: str
    k: int
    ids: tuple[str, ...]
    states: tuple[State, ...]
    values: Mapping[str, Mapping[str, Sequence[float | None]]]  # state name -> probe -> values (None:
    # a copy value not defined for that example)

    def last(self) -> dict[str, int]:
        """Each trained regime's last snapshot step."""
        found: dict[str, int] = {}
        for state in self.states:
            if state.regime != BASE:
                found[state.regime] = max(found.get(state.regime, 0), state.step)
        return found

    def undefined(self) -> int:
        """How many probe examples have no copy value (in some state; it depends on the context only)."""
        return sum(
            any(self.values[state.name]["copy"][i] is None for state in self.states)
            for i in range(len(self.ids))
        )

    def copy_defined(self) -> bool:
        """False when most probe examples have no copy value: the copy probe is not defined here."""
        return defined_for_task(self.undefined(), len(self.ids))

    def scores(self) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
        """The claims machinery's scores: (state, probe) -> {(example id, probe): value}; undefined
        values are left out, and so is the copy probe where it is not defined for the task."""
        kept = PROBES if self.copy_defined() else tuple(p for p in PROBES if p != "copy")
        return {
            (state, probe): {
                (rid, probe): v for rid, v in zip(self.ids, values, strict=True) if v is not None
            }
            for state, by_probe in self.values.items()
            for probe, values in by_probe.items()
            if probe in kept
        }


def probe_stage(
    plan: Plan, store: Store, examples: int | None = None, *, skip_untrained: bool = False
) -> list[Report]:
    """`icl-bench probe`: probe the base model and every snapshot of every regime of the plan, write
    probes.md/json/png into `plan.out`; return the Report (cells, verdicts) of each (task, model).

    A regime that is not trained is an error before any work (`skip_untrained`: left out, as after a
    sweep whose training failed), so is one trained without snapshots or a task without a paraphraser.
    """
    from icl_bench.sweep.plan import size_of
    from icl_bench.sweep.sweep import Setting, Sweep
    from icl_bench.train.trainer import snapshots

    n = examples or size_of(plan.size).probe_examples
    for name in plan.tasks:  # before the sweep materialises any model
        check_task(plugins.tasks[name], plan.k)
    sweep = Sweep(plan, store)
    settings: list[Setting] = []
    sweep.each(lambda setting, _: settings.append(setting), base=False, quiet=True)
    untrained, bare, trained = [], [], {}
    for setting in settings:
        folder = sweep.trained(setting)
        if folder is None:
            untrained.append(setting.label)
        elif not snapshots(folder):
            bare.append(setting.label)
        else:
            trained[setting.label] = folder
    if untrained and not skip_untrained:
        raise UsageError(
            f"not trained yet: {', '.join(untrained)}; run `icl-bench train` with the same options first"
        )
    if bare:
        raise UsageError(
            f"trained without snapshots: {', '.join(bare)}; the probes read them: retrain with "
            "snapshot_steps > 0 (rerun `icl-bench train` with a size preset that sets it)"
        )
    probed = []
    for task in sweep.tasks:
        folder = build_probe_contexts(task, sweep.contexts_config, store, n)
        items = read_items(folder)
        for spec in sweep.specs:
            reference = sweep.references[spec.name]
            states = [State(BASE, 0)]
            for setting in settings:
                if setting.task is task and setting.model is spec and setting.label in trained:
                    assert setting.regime is not None
                    for step, snapshot in snapshots(trained[setting.label]):
                        states.append(State(setting.regime.name, step, snapshot))
            values = {}
            for state in states:
                predictions = _predictions(sweep, task, spec, reference, folder, items, state)
                values[state.name] = score(task, items, predictions)
            ids = tuple(item.target.id for item in items)
            split = items[0].split if items else evaluation_splits(task)[0]
            probed.append(Probed(task.name, spec.name, split, plan.k, ids, tuple(states), values))
    reports = [report(p) for p in probed]
    write_probes(reports, plan.out)
    return reports


def _predictions(sweep, task: Task, spec, reference: str, contexts: Path, items, state: State) -> dict:
    """One state's predictions under every probe context, from the store or made and stored now."""
    from icl_bench.train.trainer import load_trained

    trained = None if state.folder is None else f"{state.folder.parent.parent.name}/{state.folder.name}"
    inputs = {
        "model": models.identity(spec, reference),
        "task": task.name,
        "probe-contexts": contexts.name,
        "trained": trained,
        "batch_size": sweep.plan.batch_size,
        "precision": sweep.precision,
        "numerics": numerics.key(),
        "version": VERSION,
    }
    if not sweep.store.has("probe-predictions", inputs):
        console.print(f"[bold]probe[/] {spec.name} / {task.name} / {state.regime} step {state.step}")
        loaded = (
            models.load(reference, sweep.precision)
            if state.folder is None
            else load_trained(reference, state.folder, sweep.precision)
        )
        made = predict(*loaded, task, items, sweep.plan.batch_size)
        rows = [
            {"id": item.target.id, "prompt": name, "prediction": made[name][i]}
            for name in PROMPTS
            for i, item in enumerate(items)
        ]
        with sweep.store.writing("probe-predictions", inputs) as folder:
            write_jsonl(folder / "predictions.jsonl", rows)
    found = read_jsonl(sweep.store.folder("probe-predictions", inputs) / "predictions.jsonl")
    by_key = {(r["id"], r["prompt"]): r["prediction"] for r in found}
    return {name: [by_key[(item.target.id, name)] for item in items] for name in PROMPTS}


# --- outputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What the output files show of one (task, model): its cells and its verdicts."""

    probed: Probed
    cells: Mapping[str, Mapping[str, Any]]  # state name -> probe -> score.Cell
    verdicts: claims.Verdicts


def report(probed: Probed, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Report:
    """Each state's cells (over the examples with a value; no copy cell where the copy probe is not
    defined for the task) and the P1-P3 verdicts."""
    defined = probed.copy_defined()

    def values(state: str, probe: str) -> list[float]:
        if probe == "copy" and not defined:
            return []
        return [v for v in probed.values[state][probe] if v is not None]

    cells = {
        state.name: {probe: cell(values(state.name, probe), resamples, level, seed) for probe in PROBES}
        for state in probed.states
    }
    found = probe_claims(probed.last(), defined)
    judged = claims.judge(found, probed.scores(), claims.MARGIN, resamples, level, seed)
    return Report(probed, cells, claims.Verdicts(probed.task, probed.model, probed.split, tuple(judged)))


def _ordered(states: Sequence[State]) -> list[State]:
    from icl_bench.report.leaderboard import regime_key

    return sorted(states, key=lambda s: (regime_key(s.regime), s.step))


def _text(c, decimals: int = DECIMALS) -> str:
    if math.isnan(c.mean):
        return "-"
    return f"{c.mean:.{decimals}f} [{c.lo:.{decimals}f}, {c.hi:.{decimals}f}]"


def _shown(rep: Report, probe: str) -> bool:
    """False for the copy probe of a task where it is not defined (its cells say so instead)."""
    return probe != "copy" or rep.probed.copy_defined()


def copy_note(probed: Probed) -> str | None:
    """One sentence on the examples without a copy value (None when every example has one)."""
    undefined, n = probed.undefined(), len(probed.ids)
    if not undefined:
        return None
    head = (
        f"The copy score is {NOT_DEFINED} on {undefined} of {n} probe examples (fewer than {MIN_LABELS} "
        "distinct labels in C, or no slot with a label other than `y'_i*`, y* and y~)"
    )
    if probed.copy_defined():
        return f"{head}; its cells and P3 use the other {n - undefined}."
    return f"{head}, so the copy probe is {NOT_DEFINED} on this task and P3 is not run."


def markdown(reports: Sequence[Report], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> str:
    lines = [
        "# Probes",
        "",
        "Generated by `icl-bench probe` (or `icl-bench run --probes`) from the stored probe predictions; "
        "do not edit by hand.",
        "",
        "Per probe example x: IWL = sim_y(M(x | random), M(x | empty)); ICL = sum_i w_i sim_y(M(x | C), "
        "y_i) over the paraphrase context C, w_i proportional to max(sim_x(x, x_i), 0); copy = max over "
        "j in O of max(0, s(M(x | C deranged), `y'_j`) - s(y*, `y'_j`)) / (1 - s(y*, `y'_j`)), s = BLEU / "
        "100, O the slots of C deranged whose label `y'_j` is none of `y'_i*` (the label now attached to "
        "the paraphrase x~, at position i*), the gold y* and the paraphrase's own label y~ (nor has "
        "s(y*, `y'_j`) = 1), so only a blind copier scores (SPEC section 4). The copy score counts only "
        "similarity to `y'_j` in excess of the gold answer's own, rescaled so an exact copy scores 1: a "
        "correct structured answer (a parse, a query) shares n-grams with other labels, and a prediction "
        "equal to y* scores exactly 0. The copy score is "
        f"{NOT_DEFINED} for an example whose C has fewer than {MIN_LABELS} distinct labels or whose O is "
        f"empty; such examples are left out, and a task where most are is `{NOT_DEFINED}` (P3 not run). "
        "sim_y is the task's output similarity. Step 0 is the base model. Each cell is `mean [lo, hi]`: "
        f"the mean over the probe examples with its {level:.0%} percentile-bootstrap CI ({resamples} "
        f"resamples, seed {seed}).",
    ]
    for rep in reports:
        p = rep.probed
        lines += [
            "",
            f"## {p.task}, {p.model}",
            "",
            f"Probe examples: the first {len(p.ids)} of split `{p.split}`; k = {p.k}."
            + (f" {note}" if (note := copy_note(p)) else ""),
            "",
            "| regime | step | " + " | ".join(LABELS[probe] for probe in PROBES) + " |",
            "|:--|--:|" + "--:|" * len(PROBES),
        ]
        for state in _ordered(p.states):
            texts = [
                _text(rep.cells[state.name][probe]) if _shown(rep, probe) else NOT_DEFINED for probe in PROBES
            ]
            lines.append("| " + " | ".join((state.regime, str(state.step), *texts)) + " |")
        lines += [
            "",
            "![probes over training](probes.png)",
            "",
            "### Probe claims",
            "",
            "Paired differences over the same probe examples, at each regime's last snapshot "
            f"({resamples} bootstrap resamples of the probe examples, seed {seed}). `>`/`<`: holds when "
            "the CI excludes 0 on the claimed side, contradicted when it excludes 0 on the other. P2's "
            'first checkpoint is step 0 (the base model); "does not decrease by more than its CI" is `>=`: '
            "holds when the CI's lower end > "
            f"-{claims.MARGIN:g}, contradicted when its upper end < -{claims.MARGIN:g} (SPEC section 8).",
            "",
            "| " + " | ".join(claims.HEADER) + " |",
            "|:--|:--|--:|:--|",
        ]
        for claim, text, difference, said in claims.table_rows(rep.verdicts.claims, DECIMALS):
            cells = (
                (f"**{claim}**", f"**{text}**", "", f"**{said}**") if claim else ("", text, difference, said)
            )
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def json_text(reports: Sequence[Report], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> str:
    def number(x: float) -> float | None:
        return None if math.isnan(x) else round(x, DIGITS)

    out = []
    for rep in reports:
        p = rep.probed
        rows = [
            {
                "regime": state.regime,
                "step": state.step,
                "probe": probe,
                "mean": number(c.mean),
                "lo": number(c.lo),
                "hi": number(c.hi),
                "n": c.n,
                "defined": _shown(rep, probe),
            }
            for state in _ordered(p.states)
            for probe, c in ((probe, rep.cells[state.name][probe]) for probe in PROBES)
        ]
        values = {
            state.name: {
                probe: [None if v is None else round(v, DIGITS) for v in p.values[state.name][probe]]
                for probe in PROBES
            }
            for state in _ordered(p.states)
        }
        out.append(
            {
                "task": p.task,
                "model": p.model,
                "split": p.split,
                "k": p.k,
                "ids": list(p.ids),
                "copy": {"defined": p.copy_defined(), "undefined": p.undefined(), "examples": len(p.ids)},
                "rows": rows,
                "claims": claims.as_json([rep.verdicts], DIGITS)[0]["claims"],
                "values": values,
            }
        )
    bootstrap = {"resamples": resamples, "level": level, "seed": seed}
    data = {"bootstrap": bootstrap, "claims_margin": claims.MARGIN, "probes": out}
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def plot_png(reports: Sequence[Report]) -> bytes:
    """The paper's Figure 4: a row per (task, model), a panel per probe, a curve per regime over training
    steps (from the base model at step 0) with its CI band.  Deterministic bytes, as the leaderboard's."""
    import matplotlib
    import matplotlib.style
    from matplotlib.figure import Figure

    from icl_bench.report.leaderboard import regime_key

    regimes = sorted({s.regime for rep in reports for s in rep.probed.states} | {BASE}, key=regime_key)
    with matplotlib.style.context("default"):
        colours = matplotlib.colormaps["tab10" if len(regimes) <= 10 else "tab20"]
        rows = max(1, len(reports))
        fig = Figure(figsize=(3.6 * len(PROBES) + 1.6, 2.9 * rows), dpi=100, layout="constrained")
        axes = fig.subplots(rows, len(PROBES), squeeze=False)
        handles: dict[str, Any] = {}
        for r, rep in enumerate(reports):
            p = rep.probed
            base = next(s for s in p.states if s.regime == BASE)
            for c, probe in enumerate(PROBES):
                ax = axes[r][c]
                start = rep.cells[base.name][probe]
                if not _shown(rep, probe):
                    ax.text(0.5, 0.5, f"{NOT_DEFINED} on this task", ha="center", va="center", fontsize=9)
                for regime in regimes if _shown(rep, probe) else ():
                    chosen = [s for s in _ordered(p.states) if s.regime == regime]
                    if not chosen:
                        continue
                    points = [start] if regime != BASE else []
                    points += [rep.cells[s.name][probe] for s in chosen]
                    steps = ([0] if regime != BASE else []) + [s.step for s in chosen]
                    colour = colours(regimes.index(regime))
                    means = [pt.mean for pt in points]
                    style = {"marker": "o", "ms": 3.5, "lw": 1.2, "color": colour}
                    if regime == BASE:
                        style |= {"marker": "s", "ms": 5, "ls": "none"}
                    (handles[regime],) = ax.plot(steps, means, **style)
                    if regime != BASE:
                        los, his = [pt.lo for pt in points], [pt.hi for pt in points]
                        ax.fill_between(steps, los, his, color=colour, alpha=0.15, lw=0)
                ax.set_title(
                    f"{LABELS[probe]} score" + (f": {p.task}, {p.model}" if len(reports) > 1 else ""),
                    fontsize=9,
                )
                ax.set_ylim(-0.03, 1.03)  # every probe score lies in [0, 1]
                ax.grid(alpha=0.3)
                if r == rows - 1:
                    ax.set_xlabel("training step")
        order = [regime for regime in regimes if regime in handles]
        if order:
            fig.legend([handles[regime] for regime in order], order, loc="outside right upper", fontsize=8)
        if len(reports) == 1:
            fig.suptitle(f"{reports[0].probed.task}, {reports[0].probed.model}", fontsize=11)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def render(reports: Sequence[Report], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Every probe file's name and bytes (`resamples`, `level`, `seed`: those the reports were made with)."""
    return {
        "probes.md": markdown(reports, resamples, level, seed).encode(),
        "probes.json": json_text(reports, resamples, level, seed).encode(),
        "probes.png": plot_png(reports),
    }


def write_probes(reports: Sequence[Report], out: Path) -> list[Path]:
    files = render(reports)
    for name, data in files.items():
        write_atomic(Path(out) / name, data)
    return [Path(out) / name for name in files]


def _terminal_text(rep: Report, state: State, probe: str) -> str:
    c = rep.cells[state.name][probe]
    if not _shown(rep, probe):
        return NOT_DEFINED
    return "-" if math.isnan(c.mean) else f"{c.mean:.{DECIMALS}f} ±{(c.hi - c.lo) / 2:.{DECIMALS}f}"


def rich_tables(reports: Sequence[Report], level: float = 0.95) -> list:
    """Per (task, model): the probe cells by regime and step (`mean ±half-width`), then the verdicts;
    each fits 80 columns."""
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for rep in reports:
        p = rep.probed
        title = f"probes: {p.task}, {p.model} ({len(p.ids)} examples of split {p.split})"
        caption = f"±: half the {level:.0%} CI"
        if p.undefined():
            said = "left out" if p.copy_defined() else "P3 not run"
            caption += f"; copy {NOT_DEFINED} on {p.undefined()} of {len(p.ids)} examples ({said})"
        table = Table(title=escape(title), title_justify="left", caption=caption, caption_justify="left")
        table.add_column("regime", overflow="fold")
        table.add_column("step", justify="right", no_wrap=True)
        for probe in PROBES:
            table.add_column(LABELS[probe], justify="right", no_wrap=True)
        for state in _ordered(p.states):
            texts = [_terminal_text(rep, state, probe) for probe in PROBES]
            table.add_row(escape(state.regime), str(state.step), *texts)
        tables += [table, claims.rich_table(rep.verdicts, "probe scores", DECIMALS)]
    return tables


def show(reports: Sequence[Report]) -> None:
    """Print the probe and verdict tables to stdout."""
    from icl_bench.core import progress

    for table in rich_tables(reports):
        progress.out.print(table, soft_wrap=False)
