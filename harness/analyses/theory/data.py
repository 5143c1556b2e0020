"""The task and its contexts: the target f (a fixed random MLP on the unit sphere), one seeded generator
per purpose, samplers of points on the sphere with exact similarity constraints (far, near), the
contexts of each regime, and Batch, the queries with their contexts and labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from icl_bench.analyses.theory.config import TRAIN_REGIMES, TheoryConfig
from icl_bench.core.errors import UsageError

# --- the task: a fixed random MLP on the sphere ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """y = (a . tanh(W x + c) - shift) / scale: a fixed random 2-layer MLP, standardised so y has mean 0
    and variance 1 over the sphere (on a fixed sample); `lipschitz` bounds its Lipschitz constant."""

    w: np.ndarray
    c: np.ndarray
    a: np.ndarray
    shift: float
    scale: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.tanh(x @ self.w.T + self.c) @ self.a - self.shift) / self.scale

    @property
    def lipschitz(self) -> float:
        return float(np.linalg.norm(self.a) * np.linalg.norm(self.w, 2) / self.scale)


def make_target(config: TheoryConfig) -> Target:
    rng = stream(config, "target")
    w = rng.normal(0.0, config.f_scale / math.sqrt(config.d), (config.f_hidden, config.d))
    c = rng.normal(0.0, 0.5, config.f_hidden)
    a = rng.normal(0.0, 1.0, config.f_hidden)
    raw = Target(w, c, a, 0.0, 1.0)(sphere(rng, 100_000, config.d))
    return Target(w, c, a, float(raw.mean()), float(raw.std()))


def stream(config: TheoryConfig, name: str) -> np.random.Generator:
    """An independent generator per purpose (target, test set, each regime's training data)."""
    purposes = ("target", "test", "init", *TRAIN_REGIMES, "fhat alone")
    return np.random.default_rng([config.seed, purposes.index(name)])


# --- contexts on the sphere, with exact similarity constraints ---------------------------------------


def sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n points uniform on the unit sphere in R^d."""
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def far(rng: np.random.Generator, x: np.ndarray, m: int, delta: float) -> np.ndarray:
    """(n, m, d): for each query x[j], m points uniform on the sphere restricted to <x[j], .> <= delta
    (rejection: redraw every point that breaks the bound until none does)."""
    n, d = x.shape
    points = sphere(rng, n * m, d).reshape(n, m, d)
    bad = np.einsum("nd,nmd->nm", x, points) > delta
    while bad.any():
        points[bad] = sphere(rng, int(bad.sum()), d)
        bad = np.einsum("nd,nmd->nm", x, points) > delta
    return points


def near(rng: np.random.Generator, x: np.ndarray, m: int, eps: float) -> np.ndarray:
    """(n, m, d): for each query x[j], m points uniform on the cap <x[j], .> >= 1 - eps.

    A point is t x + sqrt(1 - t^2) u with u uniform on the sphere orthogonal to x, so its similarity is
    exactly t.  Under the uniform distribution (1 + t) / 2 ~ Beta(a, a) with a = (d - 1) / 2; on the cap
    v = (1 - t) / 2 <= eps / 2 is drawn from the density of v^(a-1) (1 - v)^(a-1) by rejection from v^(a-1).
    """
    n, d = x.shape
    a = (d - 1) / 2
    top = max(1.0, (1 - eps / 2) ** (a - 1))  # the largest (1 - v)^(a-1) on [0, eps/2]
    v = np.empty(n * m)
    todo = np.arange(n * m)
    while todo.size:
        draw = eps / 2 * rng.random(todo.size) ** (1 / a)
        keep = rng.random(todo.size) * top <= (1 - draw) ** (a - 1)
        v[todo[keep]] = draw[keep]
        todo = todo[~keep]
    t = (1 - 2 * v).reshape(n, m, 1)
    u = rng.standard_normal((n, m, d))
    u -= np.einsum("nmd,nd->nm", u, x)[..., None] * x[:, None, :]
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    return t * x[:, None, :] + np.sqrt(1 - t**2) * u


def contexts(rng: np.random.Generator, x: np.ndarray, regime: str, config: TheoryConfig) -> np.ndarray:
    """(n, k, d) context inputs for queries x under a regime (train or test)."""
    n, k = len(x), config.k
    if regime == "random":
        return far(rng, x, k, config.delta)
    if regime == "similar":
        return near(rng, x, k, config.eps)
    if regime == "one-near":
        points = far(rng, x, k, config.delta)
        slot = rng.integers(0, k, n)
        points[np.arange(n), slot] = near(rng, x, 1, config.eps)[:, 0]
        return points
    if regime in ("random+similar", "contrastive"):
        other = "similar" if regime == "random+similar" else "one-near"
        pick = rng.random(n) < config.p_random
        points = np.empty((n, k, x.shape[1]))
        points[pick] = contexts(rng, x[pick], "random", config)
        points[~pick] = contexts(rng, x[~pick], other, config)
        return points
    raise UsageError(f"unknown theory regime {regime!r}; known regimes: {', '.join(TRAIN_REGIMES)}")


@dataclass(frozen=True)
class Batch:
    """Queries x (n, d), context inputs xs (n, k, d), their labels ys (n, k), and targets y (n,)."""

    x: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor
    y: torch.Tensor


def draw(rng: np.random.Generator, regime: str, n: int, config: TheoryConfig, target: Target) -> Batch:
    """n fresh queries with contexts of `regime`, labelled by the target."""
    x = sphere(rng, n, config.d)
    xs = contexts(rng, x, regime, config)
    return Batch(*(torch.from_numpy(a) for a in (x, xs, target(xs), target(x))))
