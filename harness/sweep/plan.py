"""A sweep's plan: which models, tasks and regimes, at which size, with which overrides; the size
presets; and the regime options of the command line (`--regimes`, `--set`, `--data-dir`), checked
before any work."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from icl_bench.contexts.build import ContextConfig
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.names import DEFAULT_TASK, MAIN_REGIMES
from icl_bench.core.types import Regime
from icl_bench.core.validate import is_number, names_in
from icl_bench.paraphrase import llm as paraphrase
from icl_bench.train.config import TrainConfig


@dataclass(frozen=True)
class Size:
    """A preset of data caps and training length; `probe_examples`: how many test examples the probe
    stage uses (`icl_bench.analyses.probes`).  `snapshot_steps` gives ~5 snapshots per regime: default 400
    instances (200 pool examples x 2 contexts) / batch 4 = 100 steps, every 20; smoke 4 steps, every 2;
    paper every 100 (500 steps on synthetic-alignment's 200 x 5 epochs; a 50,000-pair MT pool makes far
    more).  The default is the candidate closest to issue 21's criteria for an informative default
    (`tests/benchmarks/bench_default.py`; on `DEFAULT_TASK`, mr-offline): LoRA on attention and MLP, no
    LoRA dropout, learning rate 3e-3 after a 10% warm-up, 60 test examples."""

    contexts: ContextConfig
    train: TrainConfig
    probe_examples: int = 40


SIZES = {
    "smoke": Size(
        ContextConfig(max_pool=24, max_test=6), TrainConfig(max_steps=4, save_steps=2, snapshot_steps=2), 6
    ),
    "default": Size(
        ContextConfig(max_pool=200, max_test=60, epochs=2),
        TrainConfig(
            adapt="attention+mlp",
            lora_dropout=0.0,
            learning_rate=3e-3,
            warmup_ratio=0.1,
            batch_size=4,
            snapshot_steps=20,
        ),
        40,
    ),
    "paper": Size(ContextConfig(epochs=5), TrainConfig(snapshot_steps=100), 100),
}


def size_of(name: str) -> Size:
    if name not in SIZES:
        raise UsageError(f"unknown size {name!r}; known sizes: {', '.join(SIZES)}")
    return SIZES[name]


@dataclass(frozen=True)
class Plan:
    models: Sequence[str] = ("smollm2-135m",)
    tasks: Sequence[str] = (DEFAULT_TASK,)
    regimes: Sequence[Regime] = field(default_factory=tuple)
    size: str = "default"
    seed: int = 0
    k: int = 4
    out: Path = Path("leaderboards/default")
    launcher: str = "none"
    num_gpus: int | None = None
    hostfile: Path | None = None
    batch_size: int = 16
    learning_rate: float | None = None  # overrides the size preset's
    max_test: int | None = None  # overrides the size preset's test examples per split
    max_pool: int | None = None  # ... its pool examples
    epochs: int | None = None  # ... its training contexts per pool example
    max_steps: int | None = None  # ... its training steps (-1: as many as the epochs make)
    paraphraser: str | None = None  # overrides each task's own (`llm`: the paraphrase stage)
    paraphrase_model: str = paraphrase.DEFAULT_MODEL
    metric: str | None = None  # the primary metric instead of each task's (e.g. comet)
    precision: str = "auto"  # fp32, bf16, or auto: bf16 on a bf16 GPU, else fp32
    report_to: str = "none"  # where training metrics go besides train_log.json (a Trainer integration)
    command: tuple[str, ...] = ()  # the `icl-bench` arguments that made it (none: the Python API)


def apply_data_dirs(settings: list[str], tasks: list[str]) -> None:
    """`--data-dir [TASK=]DIR`: set the data variable of TASK (bare DIR: of every task in `tasks` that
    reads a local folder) to DIR, which must exist."""
    readers = [t for t in tasks if plugins.tasks[t].data_env]
    for setting in settings:
        name, _, folder = setting.partition("=")
        if not folder or name not in plugins.tasks:  # a bare DIR (which may hold "=")
            name, folder = "", setting
        if (name and name not in readers) or not readers:
            raise UsageError(
                f"--data-dir {setting!r}: {name or 'no task'} of this command reads a local folder; "
                f"those that do: {', '.join(readers) or 'none of ' + ', '.join(tasks)}"
            )
        if not Path(folder).is_dir():
            raise UsageError(f"--data-dir {setting!r}: folder {folder} does not exist")
        for task in [name] if name else readers:
            os.environ[plugins.tasks[task].data_env] = str(Path(folder).resolve())  # type: ignore[index]


def parse_setting(
    setting: str, current: object, value: str, optional: bool = False
) -> bool | int | float | None:
    """A --set value typed like the field's current value: bool, int, or a finite float (null too for an
    `optional` field, one whose default is None); an int given for a float field becomes a float, so
    `p_paraphrase=0` and `=0.0` are the same regime (and store key)."""
    if not (current is None or isinstance(current, (bool, int, float))):
        raise UsageError(f"--set {setting!r}: that field is not a number or boolean and cannot be set here")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if isinstance(parsed, float) and not math.isfinite(parsed):  # NaN, Infinity, -Infinity, 1e999
        raise UsageError(f"--set {setting!r}: {value} is not a finite number; pass a finite value")
    if isinstance(current, bool):
        ok = isinstance(parsed, bool)
    elif isinstance(current, int):
        ok = isinstance(parsed, int) and not isinstance(parsed, bool)
    else:
        ok = (parsed is None and optional) or is_number(parsed)
    if not ok:
        kind = (
            "true/false"
            if isinstance(current, bool)
            else type(current).__name__
            if current is not None
            else "number"
        )
        nullable = " (or null)" if optional and not isinstance(current, (bool, int)) else ""
        raise UsageError(f"--set {setting!r}: {value!r} is not a valid {kind}{nullable}")
    return float(parsed) if isinstance(parsed, int) and not isinstance(current, (bool, int)) else parsed


def check_setting(setting: str, field: str, value: object) -> None:
    """The ranges of regime fields: a probability (`p_*`) in [0, 1]; `min_mean_sim`, a threshold on a
    mean cosine similarity (records are kept when above it), in [-1, 1)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if field.startswith("p_") and not 0 <= value <= 1:
        raise UsageError(f"--set {setting!r}: {field}={value} is not a probability; pass a value in [0, 1]")
    if field == "min_mean_sim" and not -1 <= value < 1:
        raise UsageError(
            f"--set {setting!r}: min_mean_sim is a threshold on a mean cosine similarity; "
            "pass a value in [-1, 1), or null for no filter"
        )


def has_context(regime: Regime) -> bool:
    """Whether some instance of `regime` has context examples (a mean sim_x to filter on)."""
    from icl_bench.contexts.samplers import Empty

    return any(prob > 0 and not isinstance(sampler, Empty) for prob, sampler in regime.components())


def resolve_regimes(spec: str, settings: Sequence[str] = ()) -> list[Regime]:
    """`main` (the paper's four), `all` or comma-separated names, each optionally reconfigured by
    `--set regime.field=value`; every value checked here, before any work."""
    spec = ",".join(MAIN_REGIMES) if spec == "main" else spec
    chosen = list(plugins.regimes) if spec == "all" else names_in("--regimes", spec, "regimes")
    regimes = {name: plugins.regimes[name] for name in chosen}
    filtered: dict[str, str] = {}  # regime -> the --set of its min_mean_sim
    for setting in settings:
        target, _, value = setting.partition("=")
        name, _, field = target.rpartition(".")
        if not (name and field and value):
            raise UsageError(f"--set {setting!r} is malformed; write --set REGIME.FIELD=VALUE")
        if name not in regimes:
            raise UsageError(f"--set {setting!r} names regime {name!r}, which is not selected by --regimes")
        regime = regimes[name]
        known = {f.name: f for f in dataclasses.fields(regime) if f.name not in ("name", "description")}
        if field not in known:
            raise UsageError(
                f"--set {setting!r}: regime {name!r} has no field {field!r}; fields: {', '.join(known)}"
            )
        parsed = parse_setting(setting, getattr(regime, field), value, known[field].default is None)
        check_setting(setting, field, parsed)
        regimes[name] = dataclasses.replace(regime, **{field: parsed})
        if field == "min_mean_sim":
            filtered[name] = setting
    for name, setting in filtered.items():
        if regimes[name].min_mean_sim is not None and not has_context(regimes[name]):
            raise UsageError(
                f"--set {setting!r}: regime {name!r} trains without context examples, so min_mean_sim "
                "would drop every training instance; set it on a regime with contexts (e.g. similar)"
            )
    return list(regimes.values())
