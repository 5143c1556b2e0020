"""`icl-bench analyze ft-vs-icl`: how in-context learning aligns with fine-tuning on the same
demonstrations (SPEC section 6; Dai et al. 2023 and the seed that revisits it).

Per task: k demonstrations (a seeded sample of the pool) and the test split.  Settings per test example:
ZSL (the base model, zero-shot prompt), ICL (the base model, the k demonstrations in the prompt, the
earliest dropped until the prompt fits `max_length` tokens), and each fine-tuned model (trained through
the harness's trainer on the demonstrations, one zero-shot sequence each, loss on the label; tested
zero-shot): FT, FT-layer-causal and FT-layer-causal with gradient clipping.  Predictions are the label
word with the highest log-likelihood.  The recordings of `hooks.py` give SimAOU and SimAM per layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icl_bench.alignment import metrics
from icl_bench.alignment.hooks import Recorder, Recording
from icl_bench.errors import UsageError
from icl_bench.hub import sample
from icl_bench.models import ModelSpec
from icl_bench.store import Store
from icl_bench.types import Example, Task

FINE_TUNED = {  # setting -> (objective, uses the config's clip)
    "ft": ("causal-lm", False),
    "ft-layer-causal": ("layer-causal", False),
    "ft-layer-causal-clip": ("layer-causal", True),
}


@dataclass(frozen=True)
class AlignmentConfig:
    """The analysis' choices: k demonstrations (the paper's 32), test examples (None: all), and the
    fine-tuning of Dai et al.: full-rank key/value projections only, SGD (choice: 3 epochs of batches of
    4 at learning rate 0.01); `clip` is the clipped layer-causal setting's (the paper's l-inf 12.0)."""

    k: int = 32
    max_test: int | None = None
    seed: int = 0
    epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 0.01
    optim: str = "sgd"
    adapt: str = "key-value"
    clip: str = "linf:12.0"
    precision: str = "auto"
    max_length: int = 2048

    def train_config(self, setting: str):
        from icl_bench.train import TrainConfig

        objective, clipped = FINE_TUNED[setting]
        return TrainConfig(
            adapt=self.adapt,
            optim=self.optim,
            objective=objective,
            clip=self.clip if clipped else "none",  # SGD as Dai et al.: no clipping
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            precision=self.precision,
        )


@dataclass
class Sums:
    """Running sums of per-layer values over examples."""

    total: np.ndarray | None = None
    n: int = 0

    def add(self, values: np.ndarray) -> None:
        self.total = values if self.total is None else self.total + values
        self.n += 1

    def mean(self) -> list[float]:
        return [] if self.total is None else [float(v) for v in self.total / self.n]


@dataclass
class TaskAlignment:
    """What the analysis measured on one task (see `report.py` for its tables)."""

    task: str
    model: str
    k: int
    config: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    predictions: dict[str, list[str]] = field(default_factory=dict)  # "gold" and every setting
    per_layer: dict[str, Sums] = field(default_factory=dict)  # e.g. "simaou/ft", "simam/zsl"
    grad_norms: dict[str, list[list[float]]] = field(default_factory=dict)  # setting -> step x layer

    def accuracy(self, setting: str) -> float:
        gold = self.predictions["gold"]
        return sum(p == g for p, g in zip(self.predictions[setting], gold, strict=True)) / len(gold)

    def summary(self) -> dict[str, Any]:
        p = self.predictions
        out: dict[str, Any] = {
            "accuracy": {s: self.accuracy(s) for s in p if s != "gold"},
            "per_layer": {name: sums.mean() for name, sums in sorted(self.per_layer.items())},
        }
        out["mean"] = {name: float(np.mean(v)) for name, v in out["per_layer"].items() if v}
        for setting in FINE_TUNED:
            if setting in p:
                args = (p["gold"], p["zsl"], p["icl"], p[setting])
                out[setting] = {
                    "rec2ftp": metrics.rec2ftp(p["gold"], p["zsl"], p[setting], p["icl"]),
                    **{f"jaccard_{to}": metrics.jaccard(*args, to=to) for to in metrics.CHANGES},
                }
        return out


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
    from icl_bench.train import train

    train_config = config.train_config(setting)
    key = {
        "model": spec.name,
        "reference": reference,
        "task": task.name,
        "demonstrations": [(d.id, d.input, d.output) for d in demos],
        "train": train_config.key(),
    }
    if not store.has("alignment-ft", key):
        records = [{"prompt": task.prompt([], d), "completion": task.render_output(d)} for d in demos]
        with store.writing("alignment-ft", key) as folder:
            train(reference, spec, records, train_config, folder / "model", folder / "checkpoints")
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return store.folder("alignment-ft", key) / "model"


class Prompter:
    """Token ids of a prompt, the positions of the target's own tokens in it, and label scores."""

    def __init__(self, task: Task, tokenizer, max_length: int):
        self.task, self.tokenizer, self.max_length = task, tokenizer, max_length
        self.labels = list(task.choices or ())
        self.label_ids = [
            tokenizer(task.render_output(Example("", "", c)), add_special_tokens=False)["input_ids"]
            for c in self.labels
        ]

    def encode(self, context: Sequence[Example], target: Example) -> tuple[list[int], list[int], int]:
        """(ids, query positions, demonstrations kept): the earliest demonstrations are dropped until
        the prompt fits `max_length` tokens."""
        context = list(context)
        while True:
            prompt = self.task.prompt(context, target)
            encoded = self.tokenizer(prompt, return_offsets_mapping=True)
            if len(encoded["input_ids"]) <= self.max_length or not context:
                break
            context = context[1:]
        start = len(prompt) - len(self.task.render_input(target))
        positions = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a >= start and b > a]
        return encoded["input_ids"], positions, len(context)

    def predict(self, model, ids: list[int], recording: Recording) -> str:
        """The label whose tokens are likeliest after the prompt (one token: from the recording)."""
        import torch

        scores = []
        for tokens in self.label_ids:
            score = float(recording.log_probs[tokens[0]])
            if len(tokens) > 1:
                with torch.no_grad():
                    device = next(model.parameters()).device
                    out = model(input_ids=torch.tensor([ids + tokens[:-1]], device=device), use_cache=False)
                logp = torch.log_softmax(out.logits[0, len(ids) :].float(), dim=-1)
                score += float(sum(logp[i, t] for i, t in enumerate(tokens[1:])))
            scores.append(score)
        return self.labels[int(np.argmax(scores))]


def align_queries(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (layers, heads, query tokens) maps cut to their common last query tokens (a boundary token
    may merge differently after demonstrations than at the start of a prompt)."""
    n = min(a.shape[-1], b.shape[-1])
    return a[..., -n:], b[..., -n:]


def shared_prefix(prompter: Prompter, demos: Sequence[Example], tests: Sequence[Example]) -> list[int]:
    """The token ids every ICL prompt starts with (the demonstrations), found on two targets; the
    recordings reuse their key/value cache."""
    if len(tests) < 2:
        return []
    first, second = (prompter.encode(demos, target)[0] for target in tests[:2])
    n = next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
        min(len(first), len(second)),
    )
    return first[: n - 1] if n > 1 else []  # one short: a target always adds tokens of its own


def analyze(task: Task, model_name: str, config: AlignmentConfig, store: Store) -> TaskAlignment:
    """Train (or reuse) the fine-tuned models, record every setting on every test example, and measure."""
    from icl_bench.models import load, materialize, resolve
    from icl_bench.progress import console, track
    from icl_bench.train import LOG, load_trained

    if not task.choices:
        raise UsageError(
            f"analyze ft-vs-icl needs a classification task (label choices); {task.name} has none"
        )
    spec = resolve(model_name)
    reference = materialize(spec, store)
    demos = demonstrations(task, config)
    tests = task.load("test")[: config.max_test]
    result = TaskAlignment(task.name, spec.name, config.k, dataclasses.asdict(config))
    models = {}
    for setting in FINE_TUNED:
        console.print(f"[bold]ft-vs-icl[/] {task.name}: fine-tune {setting} on {len(demos)} demonstrations")
        output = fine_tune(setting, task, demos, reference, spec, config, store)
        result.grad_norms[setting] = json.loads((output / LOG).read_text()).get("layer_grad_norms", [])
        models[setting] = load_trained(reference, output, config.precision)[0]
    base, tokenizer = load(reference, config.precision)
    prompter = Prompter(task, tokenizer, config.max_length)
    rng = np.random.default_rng(config.seed)
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
    """One test example's predictions and per-layer SimAOU / SimAM into `result`: `recorded` maps each
    setting to its recorder and recording; a prompt is (token ids, the target's own positions)."""
    (zsl_ids, zsl_query), (icl_ids, icl_query) = zsl_prompt, icl_prompt
    for setting, (recorder, recording) in recorded.items():
        ids = icl_ids if setting == "icl" else zsl_ids
        result.predictions[setting].append(prompter.predict(recorder.model, ids, recording))
    zsl, icl = recorded["zsl"][1], recorded["icl"][1]
    m_zsl, m_icl = align_queries(zsl.query_logits(zsl_query), icl.query_logits(icl_query))
    layers = zsl.attention_output

    def add(name: str, values: np.ndarray) -> None:
        result.per_layer.setdefault(name, Sums()).add(values)

    add("simaou/random", metrics.simaou(icl.attention_output, layers, metrics.random_update(layers, rng)))
    add("simam/zsl", metrics.simam(m_icl, m_zsl))
    for setting in FINE_TUNED:
        tuned = recorded[setting][1]
        m_ft = align_queries(tuned.query_logits(zsl_query), m_icl)[0]
        add(f"simaou/{setting}", metrics.simaou(icl.attention_output, layers, tuned.attention_output))
        add(f"simam/{setting}", metrics.simam(m_icl, m_ft))
        add(f"simam-delta/{setting}", metrics.simam_delta(m_icl, m_zsl, m_ft))
