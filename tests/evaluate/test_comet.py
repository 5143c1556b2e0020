"""COMET in its own environment: the early one-line errors, and (slow) the real setup and scoring with a
randomly initialised tiny COMET model."""

import json
import math
import os
import sys

import pytest
from helpers import error_line, run_cli

from icl_bench import Example
from icl_bench.core.errors import UsageError
from icl_bench.core.store import Store
from icl_bench.evaluate.metrics import comet


def test_a_run_with_comet_not_set_up_fails_before_any_work(tmp_path):
    line = error_line(
        run_cli(
            "run", "--metric", "comet", "--tasks", "mt-django-en-de", "--models", "tiny", "--size", "smoke",
            "--store", str(tmp_path / "store"), "--out", str(tmp_path / "o"), cwd=tmp_path,
        )
    )  # fmt: skip
    assert f"COMET is not set up in {tmp_path / 'store' / 'comet'}; run `icl-bench comet setup` first" in line
    assert not (tmp_path / "store" / "models").exists()


def test_a_broken_comet_environment_is_one_line(tmp_path):
    """An environment without unbabel-comet (this python): the worker fails, the metric says so."""
    store = Store(tmp_path)
    (comet.home(store) / "venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, comet.python(store))
    (comet.home(store) / "ready.json").write_text(json.dumps(comet.wanted()))
    metric = comet.Comet(model=comet.DEFAULT_MODEL)
    metric.check(store)
    with pytest.raises(UsageError, match=r"COMET \(Unbabel/wmt22-comet-da\) failed: ModuleNotFoundError"):
        metric(["Hallo"], [Example("1", "Hello", "Hallo")])


@pytest.mark.slow
def test_setup_once_then_score_with_a_tiny_random_model(tmp_path):
    store = Store(tmp_path)
    first = run_cli("comet", "setup", "--store", str(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(comet.python(store))
    again = run_cli("comet", "setup", "--store", str(tmp_path), cwd=tmp_path)
    assert "ready" in again.stderr and "creating" not in again.stderr
    examples = [Example(str(i), f"source {i}", f"reference {i}") for i in range(5)]
    scores = comet.Comet(store, model="tiny-random", batch_size=2)(["a", "b", "c", "d", "e"], examples)
    assert len(scores) == 5 and all(math.isfinite(s) for s in scores)
