"""The experiment: one shared set of test queries per test regime, a Cell per trained model and per
reference predictor (fhat alone, copy nearest, context mean), and `run_theory`, which trains one model
per training regime, tests them all and judges the cases (`tabulate`)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping

import torch

from icl_bench.analyses.theory.cases import judge
from icl_bench.analyses.theory.config import REFERENCES, TEST_REGIMES, TRAIN_REGIMES, Z95, TheoryConfig
from icl_bench.analyses.theory.data import Batch, Target, contexts, make_target, sphere, stream
from icl_bench.analyses.theory.model import MinimalModel, train, train_fhat_alone
from icl_bench.analyses.theory.results import Cell, TheoryResult


def summary(
    errors: torch.Tensor, weights: torch.Tensor | None = None, sims: torch.Tensor | None = None
) -> Cell:
    """A cell from per-query squared errors and (for the minimal model) attention weights."""
    mse = float(errors.mean())
    half = Z95 * float(errors.std()) / math.sqrt(len(errors))
    if weights is None or sims is None:
        return Cell(mse, half)
    k = sims.shape[1]
    top = weights[torch.arange(len(sims)), sims.argmax(1)]
    even = weights[:, :k].min(1).values  # the weight every context token gets alike
    return Cell(
        mse,
        half,
        query=float(weights[:, -1].mean()),
        eoc=float(weights[:, k].mean()),
        context=float(weights[:, :k].sum(1).mean()),
        nearest=float(top.mean()),
        averaging=float((weights[:, k] + k * even).mean()),
        copying=float((top - even).mean()),
    )


def test_sets(config: TheoryConfig, target: Target) -> dict[str, Batch]:
    """One shared set of test queries, with contexts drawn under each test regime."""
    rng = stream(config, "test")
    x = sphere(rng, config.n_test, config.d)
    sets = {}
    for regime in TEST_REGIMES:
        xs = contexts(rng, x, regime, config)
        sets[regime] = Batch(*(torch.from_numpy(a) for a in (x, xs, target(xs), target(x))))
    return sets


@torch.no_grad()
def evaluate(model: MinimalModel, batch: Batch) -> Cell:
    weights, values = model.attention(batch)
    errors = ((weights * values).sum(-1) - batch.y) ** 2
    return summary(errors, weights, torch.einsum("nd,nkd->nk", batch.x, batch.xs))


@torch.no_grad()
def references(fhat: torch.nn.Module, batch: Batch) -> dict[str, Cell]:
    """Fixed predictors: fhat trained alone, the label of the most similar context example, the mean label."""
    sims = torch.einsum("nd,nkd->nk", batch.x, batch.xs)
    nearest = batch.ys[torch.arange(len(sims)), sims.argmax(1)]
    predictions = {
        "fhat alone": fhat(batch.x)[:, 0],
        "copy nearest": nearest,
        "context mean": batch.ys.mean(1),
    }
    return {name: summary((p - batch.y) ** 2) for name, p in predictions.items()}


def run_theory(config: TheoryConfig, log: Callable[[str], None] = lambda line: None) -> TheoryResult:
    """Train one model per training regime and the references; test all under every test regime."""
    start = time.perf_counter()
    target = make_target(config)
    models = {}
    for regime in TRAIN_REGIMES:
        began = time.perf_counter()
        models[regime] = train(config, regime, target)
        log(f"trained {regime} ({time.perf_counter() - began:.1f} s)")
    fhat = train_fhat_alone(config, target)
    log("trained fhat alone")
    result = tabulate(config, target, models, fhat)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


@torch.no_grad()
def tabulate(
    config: TheoryConfig, target: Target, models: Mapping[str, MinimalModel], fhat: torch.nn.Module
) -> TheoryResult:
    """Test one model per training regime (trained, or with parameters set by hand) and the references
    under every test regime, and judge the cases."""
    tests = test_sets(config, target)
    cells, scalars = {}, {}
    for regime in TRAIN_REGIMES:
        model = models[regime]
        cells[regime] = {test: evaluate(model, batch) for test, batch in tests.items()}
        x, y = tests["random"].x, tests["random"].y
        scalars[regime] = {
            "beta": float(model.beta),
            "gamma": float(model.gamma),
            "b": float(model.b),
            "fhat_mse": float(((model.fhat(x)[:, 0] - y) ** 2).mean()),
        }
    by_test = {test: references(fhat, batch) for test, batch in tests.items()}
    refs = {name: {test: by_test[test][name] for test in TEST_REGIMES} for name in REFERENCES}
    result = TheoryResult(config, target.lipschitz, cells, refs, scalars, ())
    return dataclasses.replace(result, claims=judge(result))
