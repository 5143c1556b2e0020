"""`icl-bench analyze ft-vs-icl`: how in-context learning aligns with fine-tuning on the same
demonstrations (SPEC section 6; Dai et al. 2023 and the seed that revisits it).

Per task: k demonstrations (a seeded sample of the pool) and the test split.  Settings per test example:
ZSL (the base model, zero-shot prompt), ICL (the base model, the k demonstrations in the prompt, the
earliest dropped until the prompt fits `max_length` tokens), and each fine-tuned model (trained through
the harness's trainer on the demonstrations, one zero-shot sequence each, loss on the label; tested
zero-shot): FT, FT-layer-causal (sequential, `icl_bench.train.objectives.layer_causal_steps`) and the
same with gradient clipping.  Predictions are the label word with the highest log-likelihood.  The
recordings of `hooks.py` give SimAOU and SimAM per layer, each beside its null (`metrics.py`); every
interval is a percentile bootstrap over test examples (`icl_bench.score.bootstrap`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icl_bench.analyses.alignment import metrics
from icl_bench.analyses.alignment.config import FINE_TUNED, LAYER_ORDER, AlignmentConfig
from icl_bench.analyses.alignment.hooks import Recorder, Recording
from icl_bench.analyses.alignment.prompter import Prompter, align_queries, shared_prefix
from icl_bench.core.errors import UsageError
from icl_bench.core.hub import sample
from icl_bench.core.store import Store
from icl_bench.core.types import Example, Task
from icl_bench.models import ModelSpec
from icl_bench.score.bootstrap import Bootstrap, Estimate, contrast, weights


@dataclass
class TaskAlignment:
    """What the analysis measured on one task (see `report.py` for its tables): per test example the
    predictions of every setting and, per metric (e.g. "simaou/ft", "simaou-null/ft", "simam/zsl"), a
    value per layer; per fine-tuning run its train log's gradient norms and clip counts."""

    task: str
    model: str
    k: int
    config: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    predictions: dict[str, list[str]] = field(default_factory=dict)  # "gold" and every setting
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)  # metric -> per example (layers,)
    grad_norms: dict[str, list[list[float]]] = field(default_factory=dict)  # setting -> step x layer
    fine_tuning: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> clip statistics
    _summary: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def accuracy(self, setting: str) -> float:
        gold = self.predictions["gold"]
        return sum(p == g for p, g in zip(self.predictions[setting], gold, strict=True)) / len(gold)

    def per_example(self, name: str) -> np.ndarray:
        """The metric's mean over layers, one value per test example."""
        return np.stack(self.values[name]).mean(axis=1)

    def summary(self) -> dict[str, Any]:
        """Every number the report shows (computed once): accuracies, per-layer and mean metrics, Jaccard
        and Rec2FTP beside their chance levels, and the contrasts with bootstrap CIs."""
        if self._summary is None:
            self._summary = self._summarise()
        return self._summary

    def _summarise(self) -> dict[str, Any]:
        p = self.predictions
        per_layer = {name: np.stack(v).mean(axis=0) for name, v in sorted(self.values.items()) if v}
        out: dict[str, Any] = {
            "accuracy": {s: self.accuracy(s) for s in p if s != "gold"},
            "per_layer": {name: [float(x) for x in v] for name, v in per_layer.items()},
            "mean": {name: float(v.mean()) for name, v in per_layer.items()},
            "fine_tuning": self.fine_tuning,
        }
        for setting in FINE_TUNED:
            if setting in p:
                out[setting] = prediction_alignment(p, setting, self.labels)
        out["contrasts"] = {name: dataclasses.asdict(estimate) for name, estimate in self.contrasts().items()}
        return out

    def contrasts(self) -> dict[str, Estimate]:
        """Differences the report and the paper comparison read, each with its example-level CI:
        accuracies, SimAOU over its nulls and between methods, SimAM between settings, and Jaccard and
        Rec2FTP over their chance levels."""
        config = Bootstrap(self.config["resamples"], seed=self.config["seed"])
        p, gold = self.predictions, self.predictions["gold"]
        columns = {
            f"correct/{s}": np.array([a == g for a, g in zip(p[s], gold, strict=True)], float)
            for s in p
            if s != "gold"
        }
        columns |= {name: self.per_example(name) for name in self.values}
        found: dict[str, Estimate] = {}

        def linear(name: str, coefs: dict[str, float]) -> None:
            if all(term in columns for term in coefs):
                sums = np.stack([columns[term] for term in coefs])
                found[name] = contrast(sums, np.ones_like(sums), list(coefs.values()), config)

        linear("accuracy icl - zsl", {"correct/icl": 1, "correct/zsl": -1})
        for s in FINE_TUNED:
            linear(f"accuracy {s} - zsl", {f"correct/{s}": 1, "correct/zsl": -1})
            linear(f"accuracy icl - {s}", {"correct/icl": 1, f"correct/{s}": -1})
            linear(f"simaou {s} - gaussian null", {f"simaou/{s}": 1, "simaou-null/gaussian": -1})
            linear(f"simaou {s} - same-drift null", {f"simaou/{s}": 1, f"simaou-null/{s}": -1})
        linear("simaou gaussian null", {"simaou-null/gaussian": 1})
        linear("simam ft - zsl", {"simam/ft": 1, "simam/zsl": -1})
        for s in ("ft-layer-causal", "ft-layer-causal-clip"):
            linear(f"simaou {s} - ft", {f"simaou/{s}": 1, "simaou/ft": -1})
            excess = {f"simaou/{s}": 1, f"simaou-null/{s}": -1, "simaou/ft": -1, "simaou-null/ft": 1}
            linear(f"simaou over same-drift null {s} - ft", excess)
            linear(f"simam {s} - ft", {f"simam/{s}": 1, "simam/ft": -1})
            linear(f"simam {s} - zsl", {f"simam/{s}": 1, "simam/zsl": -1})
        linear(
            "simam ft-layer-causal-clip - ft-layer-causal",
            {"simam/ft-layer-causal-clip": 1, "simam/ft-layer-causal": -1},
        )
        arrays = {name: np.asarray(v, dtype=object) for name, v in p.items()}
        n = len(gold)
        for s in FINE_TUNED:
            if s not in arrays:
                continue
            args = (arrays["gold"], arrays["zsl"], arrays["icl"], arrays[s])
            rec = (arrays["gold"], arrays["zsl"], arrays[s], arrays["icl"])

            def jaccards(w: np.ndarray, args=args) -> np.ndarray:
                right = metrics.jaccard(*args, to="correct", weights=w)
                return right - metrics.jaccard(*args, to="incorrect", weights=w)

            found[f"jaccard correct - incorrect {s}"] = statistic(jaccards, n, config)
            for within in (False, True):
                tag = " within zsl" if within else ""
                for to in metrics.CHANGES:

                    def over_chance(w: np.ndarray, to=to, within=within, args=args) -> np.ndarray:
                        value = metrics.jaccard(*args, to=to, weights=w)
                        chance = metrics.jaccard_chance(
                            *args, to=to, labels=self.labels, within_zsl=within, weights=w
                        )
                        return value - chance

                    found[f"jaccard {to} {s} - chance{tag}"] = statistic(over_chance, n, config)

                def rec_over_chance(w: np.ndarray, within=within, rec=rec) -> np.ndarray:
                    chance = metrics.rec2ftp_chance(*rec, within_zsl=within, weights=w)
                    return metrics.rec2ftp(*rec, weights=w) - chance

                found[f"rec2ftp {s} - chance{tag}"] = statistic(rec_over_chance, n, config)
        return found


def prediction_alignment(p: dict[str, list[str]], setting: str, labels: Sequence[str]) -> dict[str, Any]:
    """Rec2FTP and the Jaccard indices of `setting` against ICL, each with its chance level under
    independent changes (`metrics.jaccard_chance`), globally and within each ZSL prediction."""
    args = (p["gold"], p["zsl"], p["icl"], p[setting])
    rec = (p["gold"], p["zsl"], p[setting], p["icl"])
    out: dict[str, Any] = {
        "rec2ftp": metrics.rec2ftp(*rec),
        "rec2ftp_chance": metrics.rec2ftp_chance(*rec),
        "rec2ftp_chance_within_zsl": metrics.rec2ftp_chance(*rec, within_zsl=True),
    }
    for to in metrics.CHANGES:
        out[f"jaccard_{to}"] = metrics.jaccard(*args, to=to)
        out[f"jaccard_{to}_chance"] = metrics.jaccard_chance(*args, to=to, labels=labels)
        out[f"jaccard_{to}_chance_within_zsl"] = metrics.jaccard_chance(
            *args, to=to, labels=labels, within_zsl=True
        )
    return out


def statistic(stat: Callable[[np.ndarray], np.ndarray], n: int, config: Bootstrap) -> Estimate:
    """`stat` of per-example weights (a (resamples, n) matrix in, a value per row out, NaN where it is
    undefined) on the data, with its percentile CI over resamples of the n test examples; resamples where
    it is undefined are dropped."""
    value = float(stat(np.ones((1, n)))[0]) if n else math.nan
    if math.isnan(value):
        return Estimate(math.nan, math.nan, math.nan, n)
    drawn = np.concatenate([stat(w) for w in weights(n, config)])
    drawn = drawn[~np.isnan(drawn)]
    if drawn.size == 0:
        return Estimate(value, math.nan, math.nan, n)
    lo, hi = np.quantile(drawn, [(1 - config.level) / 2, (1 + config.level) / 2])
    return Estimate(value, float(lo), float(hi), n)


def demonstrations(task: Task, config: AlignmentConfig) -> list[Example]:
    pool = task.load(task.pool_split)
    if len(pool) < config.k:
        raise UsageError(f"{task.name}: --k {config.k} needs that many pool examples; it has {len(pool)}")
    return sample(pool, config.k, f"{config.seed}|{task.name}|demonstrations")


def fine_tune(
    setting: str,
    task: Task,
    demos: Sequence[Example],
    reference: str,
    spec: ModelSpec,
    config: AlignmentConfig,
    store: Store,
) -> Path:
    """The fine-tuned model of `setting` on `demos` in the store (stage `alignment-ft`), trained once."""
    from icl_bench.train.trainer import train

    train_config = config.train_config(setting)
    key = {
        "model": spec.name,
        "reference": reference,
        "task": task.name,
        "demonstrations": [(d.id, d.input, d.output) for d in demos],
        "train": train_config.key(),
    }
    if train_config.objective == "layer-causal":
        key["layer_order"] = LAYER_ORDER
    if not store.has("alignment-ft", key):
        records = [{"prompt": task.prompt([], d), "completion": task.render_output(d)} for d in demos]
        with store.writing("alignment-ft", key) as folder:
            train(reference, spec, records, train_config, folder / "model", folder / "checkpoints")
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return store.folder("alignment-ft", key) / "model"


def clip_statistics(log: dict[str, Any]) -> dict[str, Any]:
    """How often a fine-tuning run's clip acted (layer steps whose gradient it changed), and the
    distribution of the layer steps' gradient l-infinity norms, from its train log."""
    clip = log.get("config", {}).get("clip", "none")
    acted = log.get("clip_acted")
    linf = [x for row in log.get("layer_grad_linf", []) for x in row]
    out: dict[str, Any] = {"clip": clip, "steps": log.get("steps")}
    if acted is not None:
        flags = [bool(x) for row in acted for x in row]
        out |= {"acted": sum(flags), "layer_steps": len(flags)}
        out["acted_fraction"] = sum(flags) / len(flags) if flags else 0.0
    if linf:
        out["grad_linf"] = {
            "median": float(np.median(linf)),
            "max": float(np.max(linf)),
            "min": float(np.min(linf)),
        }
    return out


def check_analysis(tasks: Sequence[Task], model_name: str, config: AlignmentConfig) -> None:
    """Everything that can fail before any training, in one line each: every task a classification task
    (before any data is fetched), the fine-tuning configs, the model, each task's data and its k
    demonstrations."""
    from icl_bench.models import resolve

    for task in tasks:
        if not task.choices:
            raise UsageError(
                f"analyze ft-vs-icl needs a classification task (label choices); {task.name} has none"
            )
    for setting in FINE_TUNED:
        config.train_config(setting)
    resolve(model_name)
    for task in tasks:
        task.check()
        demonstrations(task, config)


def analyze(task: Task, model_name: str, config: AlignmentConfig, store: Store) -> TaskAlignment:
    """Train (or reuse) the fine-tuned models, record every setting on every test example, and measure."""
    from icl_bench.core.progress import console, track
    from icl_bench.models import load, materialize, resolve
    from icl_bench.train.snapshots import load_trained
    from icl_bench.train.trainer import LOG

    if not task.choices:
        raise UsageError(
            f"analyze ft-vs-icl needs a classification task (label choices); {task.name} has none"
        )
    spec = resolve(model_name)
    reference = materialize(spec, store)
    demos = demonstrations(task, config)
    tests = task.load("test")[: config.max_test]
    result = TaskAlignment(task.name, spec.name, config.k, dataclasses.asdict(config), list(task.choices))
    models = {}
    for setting in FINE_TUNED:
        console.print(f"[bold]ft-vs-icl[/] {task.name}: fine-tune {setting} on {len(demos)} demonstrations")
        output = fine_tune(setting, task, demos, reference, spec, config, store)
        log = json.loads((output / LOG).read_text())
        result.grad_norms[setting] = log.get("layer_grad_norms", [])
        result.fine_tuning[setting] = clip_statistics(log)
        models[setting] = load_trained(reference, output, config.precision)[0]
    base, tokenizer = load(reference, config.precision)
    prompter = Prompter(task, tokenizer, config.max_length)
    names = ["gold", "zsl", "icl", *FINE_TUNED]
    result.predictions = {name: [] for name in names}
    kept: list[int] = []
    shared = shared_prefix(prompter, demos, tests)
    with contextlib.ExitStack() as stack:
        record = stack.enter_context(Recorder(base))
        tuned = {setting: stack.enter_context(Recorder(model)) for setting, model in models.items()}
        cache = record.prefix(shared) if shared else None
        for target in track(tests, f"{task.name}: record ZSL, ICL, FT"):
            zsl_ids, zsl_query, _ = prompter.encode([], target)
            icl_ids, icl_query, n_demos = prompter.encode(demos, target)
            kept.append(n_demos)
            fits = shared and len(icl_ids) > len(shared) and icl_ids[: len(shared)] == shared
            recorded = {
                "zsl": (record, record(zsl_ids)),
                "icl": (record, record(icl_ids, cache if fits else None)),
                **{setting: (recorder, recorder(zsl_ids)) for setting, recorder in tuned.items()},
            }
            rng = np.random.default_rng([config.seed, zlib.crc32(target.id.encode())])  # per example
            measure(result, prompter, recorded, (zsl_ids, zsl_query), (icl_ids, icl_query), rng)
            result.ids.append(target.id)
            result.predictions["gold"].append(target.output)
    result.config["demonstrations_kept"] = {"min": min(kept, default=0), "max": max(kept, default=0)}
    return result


def measure(
    result: TaskAlignment,
    prompter: Prompter,
    recorded: dict[str, tuple[Recorder, Recording]],
    zsl_prompt: tuple[list[int], list[int]],
    icl_prompt: tuple[list[int], list[int]],
    rng: np.random.Generator,
) -> None:
    """One test example's predictions and per-layer SimAOU (with its nulls) and SimAM into `result`:
    `recorded` maps each setting to its recorder and recording; a prompt is (token ids, the target's own
    positions); `rng` draws the example's random updates."""
    (zsl_ids, zsl_query), (icl_ids, icl_query) = zsl_prompt, icl_prompt
    for setting, (recorder, recording) in recorded.items():
        ids = icl_ids if setting == "icl" else zsl_ids
        result.predictions[setting].append(prompter.predict(recorder.model, ids, recording))
    zsl, icl = recorded["zsl"][1], recorded["icl"][1]
    m_zsl, m_icl = align_queries(zsl.query_logits(zsl_query), icl.query_logits(icl_query))
    h_zsl, h_icl = zsl.attention_output, icl.attention_output
    icl_update = metrics.update(h_icl, h_zsl)

    def add(name: str, values: np.ndarray) -> None:
        result.values.setdefault(name, []).append(np.asarray(values, dtype=np.float64))

    ft_update = metrics.update(recorded["ft"][1].attention_output, h_zsl)
    add("simaou-null/gaussian", metrics.cosine(icl_update, metrics.gaussian_update(ft_update, rng)))
    add("simam/zsl", metrics.simam(m_icl, m_zsl))
    for setting in FINE_TUNED:
        tuned = recorded[setting][1]
        m_ft = align_queries(tuned.query_logits(zsl_query), m_icl)[0]
        add(f"simaou/{setting}", metrics.cosine(icl_update, metrics.update(tuned.attention_output, h_zsl)))
        null = metrics.same_drift_update(tuned.attention_output, h_zsl, rng)
        add(f"simaou-null/{setting}", metrics.cosine(icl_update, null))
        add(f"simam/{setting}", metrics.simam(m_icl, m_ft))
        add(f"simam-delta/{setting}", metrics.simam_delta(m_icl, m_zsl, m_ft))
