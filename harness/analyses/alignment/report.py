"""The analysis' outputs: a markdown table in the layout of the paper's Tables 1-3 (a column per task)
with every metric's null or chance level beside it, the differences over those with bootstrap CIs, each
number against the paper (`paper.py`), the fine-tuning runs' clip counts, per-layer tables, JSON with every
number and prediction, and per-layer gradient-norm heatmaps (layer x step) of each fine-tuning run.
Deterministic bytes for equal results."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from icl_bench.analyses.alignment import paper
from icl_bench.analyses.alignment.analysis import FINE_TUNED, TaskAlignment
from icl_bench.report.writer import png_bytes

LABELS = {"ft": "FT", "ft-layer-causal": "Layer Causal FT", "ft-layer-causal-clip": "Layer Causal FT, clip"}
SHORT = {"ft": "FT", "ft-layer-causal": "LC", "ft-layer-causal-clip": "LCc"}
CHANCE = "  chance (independent)"
CHANCE_ZSL = "  chance (indep. per ZSL label)"


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.4f}"


def rows(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(row label, a cell per task) in the order of the paper's tables, each Rec2FTP and Jaccard index
    followed by its chance levels and each SimAOU by its same-drift null."""
    tasks = list(summaries)

    def row(label: str, get, percent: bool = False) -> tuple[str, list[str]]:
        return label, [_cell(get(summaries[t]), percent) for t in tasks]

    def with_chance(label: str, setting: str, key: str) -> list[tuple[str, list[str]]]:
        return [
            row(label, lambda s: s[setting][key], True),
            row(CHANCE, lambda s: s[setting][f"{key}_chance"], True),
            row(CHANCE_ZSL, lambda s: s[setting][f"{key}_chance_within_zsl"], True),
        ]

    out = [
        row("ZSL Accuracy", lambda s: s["accuracy"]["zsl"], True),
        row("ICL Accuracy", lambda s: s["accuracy"]["icl"], True),
    ]
    out += [row(f"{LABELS[f]} Accuracy", lambda s, f=f: s["accuracy"][f], True) for f in FINE_TUNED]
    for f in FINE_TUNED:
        out += with_chance(f"Rec2FTP ({LABELS[f]})", f, "rec2ftp")
        out += with_chance(f"Jaccard Index ({LABELS[f]}, %)", f, "jaccard_all")
        out += with_chance(f"Jaccard - Correct ({LABELS[f]}, %)", f, "jaccard_correct")
        out += with_chance(f"Jaccard - Incorrect ({LABELS[f]}, %)", f, "jaccard_incorrect")
    out.append(row("SimAOU (Random: Gaussian, FT's norm)", lambda s: s["mean"].get("simaou-null/gaussian")))
    for f in FINE_TUNED:
        out.append(row(f"SimAOU ({LABELS[f]})", lambda s, f=f: s["mean"].get(f"simaou/{f}")))
        out.append(row("  null, same drift", lambda s, f=f: s["mean"].get(f"simaou-null/{f}")))
    out.append(row("SimAM (ZSL)", lambda s: s["mean"].get("simam/zsl")))
    out += [row(f"SimAM ({LABELS[f]})", lambda s, f=f: s["mean"].get(f"simam/{f}")) for f in FINE_TUNED]
    out += [
        row(f"SimAM-delta ({LABELS[f]})", lambda s, f=f: s["mean"].get(f"simam-delta/{f}"))
        for f in FINE_TUNED
    ]
    return out


def _interval(estimate: dict[str, float] | None, percent: bool) -> str:
    if estimate is None or not math.isfinite(estimate["value"]):
        return "-"
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    v, lo, hi = (scale * estimate[k] for k in ("value", "lo", "hi"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{v:+.{digits}f}"
    side = "above 0" if lo > 0 else "below 0" if hi < 0 else "0 in CI"
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] {side}"


def beside_nulls(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: each Jaccard index and Rec2FTP minus its chance level, each SimAOU minus its
    nulls, with 95% CIs over test examples."""
    contrasts = summary["contrasts"]
    lines = [
        "| difference (95% CI) | " + " | ".join(SHORT[f] for f in FINE_TUNED) + " |",
        "| --- | " + " | ".join("---:" for _ in FINE_TUNED) + " |",
    ]

    def line(label: str, key: str, percent: bool) -> None:
        cells = [_interval(contrasts.get(key.format(f=f)), percent) for f in FINE_TUNED]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for tag, name in (("", "chance"), (" within zsl", "chance per ZSL label")):
        line(f"Rec2FTP - {name} (pts)", "rec2ftp {f} - chance" + tag, True)
        for to in ("all", "correct", "incorrect"):
            line(f"Jaccard {to} - {name} (pts)", f"jaccard {to} {{f}} - chance{tag}", True)
    line("SimAOU - Gaussian null", "simaou {f} - gaussian null", False)
    line("SimAOU - same-drift null", "simaou {f} - same-drift null", False)
    line("(SimAOU - null) - FT's", "simaou over same-drift null {f} - ft", False)
    return lines


def fine_tuning_lines(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: each fine-tuning run's steps, clip, how often it acted and its gradients' l-inf
    norms per layer step."""
    lines = [
        "| run | steps | clip | clip acted (layer steps) | grad l-inf median | max |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for setting in FINE_TUNED:
        stats = summary["fine_tuning"].get(setting)
        if not stats:
            continue
        acted = (
            f"{stats['acted']} of {stats['layer_steps']} ({100 * stats['acted_fraction']:.1f}%)"
            if "acted" in stats
            else "not logged"
        )
        linf = stats.get("grad_linf", {})
        median, top = (f"{linf[k]:.4g}" if k in linf else "-" for k in ("median", "max"))
        lines.append(
            f"| {LABELS[setting]} | {stats['steps']} | {stats['clip']} | {acted} | {median} | {top} |"
        )
    return lines


def comparison_lines(task: str, summary: dict[str, Any]) -> list[str]:
    found = paper.compare(task, summary)
    if not found:
        return ["The paper has no such task: nothing to compare."]
    lines = [
        f"Paper: {paper.TASKS[task]}.  Relations: our difference with its 95% CI; the paper's difference.",
        "",
        "| quantity | ours | paper | verdict | why |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    lines += [f"| {c.quantity} | {c.ours} | {c.paper} | {c.verdict} | {c.why} |" for c in found]
    counts = {v: sum(c.verdict == v for c in found) for v in ("agrees", "disagrees", "inconclusive")}
    lines += ["", "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
    return lines


NOTES = """Accuracies, Rec2FTP and Jaccard in %; SimAOU and SimAM are cosines, averaged over layers.
Chance (independent): the value expected if ICL's and the fine-tuned model's prediction changes were
independent with their observed rates, a same-label intersection weighted by the chance that both pick
the same new label (`metrics.jaccard_chance`); per ZSL label: the same with the rates taken within each
ZSL prediction.  SimAOU (Random): a Gaussian direction scaled to the FT update's norm (mean 0).  Null,
same drift: the method's update turned to a random direction at the same angle from the ZSL state (same
norm, same component along it), the SimAOU a drift of that size alone gives.  Every CI resamples
test examples only: each setting is one fine-tuning run (one demonstration sample, one seed), whose
run-to-run variation no interval here includes."""


def markdown(results: Sequence[TaskAlignment]) -> str:
    summaries = {r.task: r.summary() for r in results}
    first = results[0]
    config = first.config
    lines = [
        "# ICL vs fine-tuning",
        "",
        f"Model `{first.model}`, k = {config['k']} demonstrations (a seeded sample of the pool, seed",
        f"{config['seed']}). Fine-tuning on them: {config['adapt']} parameters, {config['optim']}, learning",
        f"rate {config['learning_rate']}, {config['epochs']} epochs of batches of {config['batch_size']};"
        " layer-causal FT steps layer after layer;",
        f"the clipped layer-causal run: {config['clip']} (gradient norm clipping per layer step; the",
        "default is the median layer-step gradient l-inf norm of the unclipped run, see AlignmentConfig).",
        f"Intervals: {config['resamples']} bootstrap resamples of the test examples.",
        "Generated by `icl-bench analyze ft-vs-icl`; do not edit by hand.",
        "",
        "| | " + " | ".join(f"{r.task} (n={len(r.ids)})" for r in results) + " |",
        "| --- | " + " | ".join("---:" for _ in results) + " |",
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows(summaries)]
    lines += ["", NOTES]
    for r in results:
        summary = summaries[r.task]
        lines += ["", f"## {r.task}: beside chance and nulls", "", *beside_nulls(summary)]
        lines += ["", f"## {r.task}: against the paper", "", *comparison_lines(r.task, summary)]
        lines += ["", f"## {r.task}: fine-tuning runs", "", *fine_tuning_lines(summary)]
        lines += ["", *per_layer_lines(r, summary["per_layer"])]
    return "\n".join(lines) + "\n"


def per_layer_lines(r: TaskAlignment, per_layer: dict[str, list[float]]) -> list[str]:
    aou = ["simaou-null/gaussian"]
    for f in FINE_TUNED:
        aou += [f"simaou/{f}", f"simaou-null/{f}"]
    am = ["simam/zsl", *[f"simam/{f}" for f in FINE_TUNED]]
    short = {"simaou-null/gaussian": "rand", "simam/zsl": "ZSL"}
    short |= {f"simaou/{f}": s for f, s in SHORT.items()} | {f"simam/{f}": s for f, s in SHORT.items()}
    short |= {f"simaou-null/{f}": "null" for f in FINE_TUNED}
    lines = [
        f"## {r.task}: per layer",
        "",
        "Demonstrations kept in the ICL prompts (the earliest dropped to fit the context): "
        "{min} to {max}.".format(**r.config["demonstrations_kept"]),
        "SimAOU (rand: the Gaussian null; null: the same-drift null of the column before) and SimAM;",
        "LC = layer-causal FT, LCc = the clipped one.",
    ]
    for title, names in (("SimAOU", aou), ("SimAM", am)):
        lines += [
            "",
            "| layer | " + " | ".join(f"{title[3:]} {short[n]}" for n in names) + " |",
            "| ---: | " + " | ".join("---:" for _ in names) + " |",
        ]
        for layer in range(len(per_layer[names[0]])):
            lines.append(f"| {layer} | " + " | ".join(f"{per_layer[n][layer]:.3f}" for n in names) + " |")
    return lines


def rich_table(results: Sequence[TaskAlignment]):
    """The main table for a terminal (80 columns for up to three tasks)."""
    from rich.table import Table

    table = Table(title=f"ICL vs fine-tuning, {results[0].model}", title_justify="left")
    table.add_column("")
    for r in results:
        table.add_column(r.task, justify="right")
    for label, cells in rows({r.task: r.summary() for r in results}):
        table.add_row(label, *cells)
    return table


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (an undefined CI) as None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_text(results: Sequence[TaskAlignment]) -> str:
    data = {
        r.task: {
            "model": r.model,
            "config": r.config,
            **r.summary(),
            "paper": [vars(c) for c in paper.compare(r.task, r.summary())],
            "ids": r.ids,
            "predictions": r.predictions,
            "layer_grad_norms": r.grad_norms,
        }
        for r in results
    }
    return json.dumps(_finite(data), indent=1, sort_keys=True, allow_nan=False) + "\n"


def heatmap_png(result: TaskAlignment) -> bytes:
    """log10 of each layer's gradient L2 norm at each step, a panel per fine-tuning run."""
    import matplotlib.style
    from matplotlib.figure import Figure

    runs = [
        (s, np.asarray(result.grad_norms[s], dtype=float)) for s in FINE_TUNED if result.grad_norms.get(s)
    ]
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(4.2 * max(1, len(runs)), 3.6), dpi=100, layout="constrained")
        axes = fig.subplots(1, max(1, len(runs)), squeeze=False)[0]
        for ax, (setting, norms) in zip(axes, runs, strict=False):
            image = ax.imshow(np.log10(norms.T + 1e-12), aspect="auto", origin="lower", cmap="viridis")
            ax.set_title(LABELS[setting], fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel("layer")
            fig.colorbar(image, ax=ax, label="log10 gradient L2 norm")
        fig.suptitle(f"{result.task}, {result.model}: per-layer gradient norms", fontsize=10)
        return png_bytes(fig)


def render(results: Sequence[TaskAlignment]) -> dict[str, bytes]:
    files = {"ft-vs-icl.md": markdown(results).encode(), "ft-vs-icl.json": json_text(results).encode()}
    files |= {f"grad-norms-{r.task}.png": heatmap_png(r) for r in results}
    return files
