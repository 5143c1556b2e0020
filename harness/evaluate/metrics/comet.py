"""COMET-22 (`Unbabel/wmt22-comet-da`), the paper's MT metric, run in an environment of its own.

unbabel-comet pins transformers<5, huggingface-hub<1 and numpy<2, so it cannot share this stack.
`icl-bench comet setup` makes a virtual environment under the store (`<store>/comet/venv`); the `comet`
metric sends each batch of (source, prediction, reference) there as JSON to `comet_worker.py` (one
subprocess per call; the worker batches inside) and reads one score per item back.  Which checkpoint:
`$ICL_BENCH_COMET_MODEL` (a hub id, a local checkpoint, or `tiny-random`: an untrained tiny model that
exercises the plumbing offline), default `Unbabel/wmt22-comet-da`, downloaded once into the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_json
from icl_bench.core.progress import console
from icl_bench.core.store import Store
from icl_bench.core.types import Example, Metric

REQUIREMENTS = ("unbabel-comet==2.2.7", "setuptools<81")  # without the setuptools pin, no pkg_resources
MODEL_ENV = "ICL_BENCH_COMET_MODEL"
DEFAULT_MODEL = "Unbabel/wmt22-comet-da"
WORKER = Path(__file__).with_name("comet_worker.py")


def home(store: Store) -> Path:
    return store.root / "comet"


def python(store: Store) -> Path:
    return home(store) / "venv" / "bin" / "python"


def wanted() -> dict[str, object]:
    """What the environment must hold: COMET's requirements and this stack's torch (its CPU or CUDA
    build is already on disk, so the environment reuses it)."""
    import torch

    return {"requirements": [f"torch=={torch.__version__.split('+')[0]}", *REQUIREMENTS]}


def ready(store: Store) -> bool:
    marker = home(store) / "ready.json"
    return python(store).is_file() and marker.is_file() and json.loads(marker.read_text()) == wanted()


def check_ready(store: Store) -> None:
    if not ready(store):
        raise UsageError(
            f"COMET is not set up in {home(store)}; run `icl-bench comet setup` first (it installs "
            "unbabel-comet into an environment of its own)"
        )


def setup(store: Store) -> Path:
    """Create (once) the COMET environment; its python's path."""
    if ready(store):
        console.print(f"COMET environment ready in {home(store)}")
        return python(store)
    venv = home(store) / "venv"
    requirements = wanted()["requirements"]
    console.print(f"creating the COMET environment in {venv} (pip install {' '.join(requirements)})")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
    ]
    for step in steps:
        done = subprocess.run(step, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(
                f"COMET setup failed ({reason[:160]}); check pip's network access and rerun "
                "`icl-bench comet setup`"
            )
    write_json(home(store) / "ready.json", wanted())
    return python(store)


class Comet(Metric):
    name = "comet"
    description = "COMET-22 (wmt22-comet-da) in its own environment (`icl-bench comet setup`), 0-1"

    def __init__(self, store: Store | None = None, model: str | None = None, batch_size: int = 16):
        self.store, self._model, self.batch_size = store or Store(), model, batch_size

    @property
    def model(self) -> str:
        return self._model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL

    @property
    def bounds(self) -> None:
        """COMET's regression head is not bounded: scores slightly outside 0-1 are valid."""
        return None

    def check(self, store: Store) -> None:
        """The environment must be set up in the run's store; scoring then uses that one."""
        check_ready(store)
        self.store = store

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        check_ready(self.store)
        pairs = zip(predictions, examples, strict=True)
        items = [{"src": ex.input, "mt": prediction, "ref": ex.output} for prediction, ex in pairs]
        request = {
            "model": self.model,
            "cache": str(home(self.store) / "models"),
            "batch_size": self.batch_size,
            "items": items,
        }
        done = subprocess.run(
            [str(python(self.store)), "-I", str(WORKER)],  # -I: no script folder on sys.path
            input=json.dumps(request),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(
                f"COMET ({self.model}) failed: {reason[:200]}; check ${MODEL_ENV} and the hub login"
            )
        scores = json.loads(done.stdout)["scores"]
        assert len(scores) == len(items), "the COMET worker returned fewer scores than items"
        return [float(s) for s in scores]
