"""The minimal model (appendix A.4: one softmax at the query over the context tokens, the end-of-context
token and the query's in-weights estimate fhat) and its training: Adam on fresh batches of a regime, one
model per training regime, and fhat alone as the in-weights reference."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from icl_bench.analyses.theory.config import TRAIN_REGIMES, TheoryConfig
from icl_bench.analyses.theory.data import Batch, Target, draw, stream


class MinimalModel(torch.nn.Module):
    """The second layer at the query position (appendix A.4): one softmax over k context tokens, the
    end-of-context token and the query, with the learnable scalars beta, gamma, b and the MLP fhat."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.beta = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.gamma = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.fhat = torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        ).double()

    def attention(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights and values, (n, k + 2) each: context tokens, end of context, query."""
        sims = torch.einsum("nd,nkd->nk", batch.x, batch.xs)
        eoc = (batch.x * batch.xs.mean(1)).sum(-1, keepdim=True)
        logits = torch.cat(
            [self.beta * sims + self.b, self.gamma * eoc + self.b, torch.zeros_like(eoc)], dim=-1
        )
        values = torch.cat([batch.ys, batch.ys.mean(1, keepdim=True), self.fhat(batch.x)], dim=-1)
        return torch.softmax(logits, dim=-1), values

    def forward(self, batch: Batch) -> torch.Tensor:
        weights, values = self.attention(batch)
        return (weights * values).sum(-1)


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is fastest and keeps float sums in one order on any machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(
    module: torch.nn.Module,
    loss_of: Callable[[Batch], torch.Tensor],
    rng: np.random.Generator,
    regime: str,
    config: TheoryConfig,
    target: Target,
) -> None:
    """Adam on fresh batches of `regime` (population loss, as the analysis assumes)."""
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr)
    for _ in range(config.steps):
        loss = loss_of(draw(rng, regime, config.batch, config, target))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def initial(config: TheoryConfig, regime: str) -> MinimalModel:
    """A fresh model: beta = gamma = b = 0, fhat initialised from a seed of its own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(stream(config, "init").integers(2**31)) + TRAIN_REGIMES.index(regime))
        return MinimalModel(config.d, config.fhat_hidden)


def train(config: TheoryConfig, regime: str, target: Target) -> MinimalModel:
    """One minimal model trained on contexts of `regime` with squared loss."""
    model = initial(config, regime)

    def loss(batch: Batch) -> torch.Tensor:
        return ((model(batch) - batch.y) ** 2).mean()

    with one_thread():
        fit(model, loss, stream(config, regime), regime, config, target)
    return model


def train_fhat_alone(config: TheoryConfig, target: Target) -> torch.nn.Module:
    """The reference in-weights estimator: fhat's architecture and budget trained on (x, y) alone."""
    fhat = initial(config, "random").fhat

    def loss(batch: Batch) -> torch.Tensor:
        return ((fhat(batch.x)[:, 0] - batch.y) ** 2).mean()

    with one_thread():
        fit(fhat, loss, stream(config, "fhat alone"), "random", config, target)
    return fhat
