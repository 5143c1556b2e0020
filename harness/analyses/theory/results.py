"""What a run of the minimal model measures: Cell (test MSE and attention masses of one train/test
pair), Check (a mechanism the paper names, against the one that dominates), Claim (a case's verdict),
and TheoryResult, which holds them all with the config and checks Assumption (A)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from icl_bench.analyses.theory.config import (
    AVERAGING,
    COPYING,
    DOMINANT,
    FALLBACK,
    MECHANISMS,
    TRAIN_REGIMES,
    TheoryConfig,
)


@dataclass(frozen=True)
class Cell:
    """Test MSE (mean and half its 95% interval over test queries) and mean attention masses: on the
    query token (IWL, the fallback mass), the end-of-context token, all context tokens, the most similar
    context token, and the averaging and copying masses (see MECHANISMS; means of per-query masses)."""

    mse: float
    half: float
    query: float = math.nan
    eoc: float = math.nan
    context: float = math.nan
    nearest: float = math.nan
    averaging: float = math.nan
    copying: float = math.nan

    def mass(self, mechanism: str) -> float:
        """The mean attention mass of a mechanism: fallback, averaging or copying."""
        return {FALLBACK: self.query, AVERAGING: self.averaging, COPYING: self.copying}[mechanism]

    def dominant(self) -> str:
        """The mechanism whose mass exceeds DOMINANT, or "none" (at most one can, they add up to <= 1)."""
        return next((m for m in MECHANISMS if self.mass(m) > DOMINANT), "none")


@dataclass(frozen=True)
class Check:
    """One mechanism the paper names for a case under one test regime, and what the model does there."""

    test: str
    expected: str  # fallback, averaging or copying
    fallback: float
    averaging: float
    copying: float
    dominant: str  # the mechanism with more than DOMINANT of the mass, or "none"
    holds: bool  # the expected mechanism dominates

    @classmethod
    def of(cls, cell: Cell, test: str, expected: str) -> Check:
        masses = [cell.mass(m) for m in MECHANISMS]
        return cls(test, expected, *masses, cell.dominant(), cell.dominant() == expected)


@dataclass(frozen=True)
class Claim:
    """A case's verdict: it reproduces when every mechanism check holds and the MSE criterion holds."""

    case: int
    regime: str
    claim: str
    criterion: str
    observed: str
    reproduces: bool
    note: str = ""  # why it does not reproduce, where the numbers say so
    checks: tuple[Check, ...] = ()  # the mechanisms the paper names, per test regime
    mse_holds: bool = False  # the MSE half of the criterion (bad in the brittle column, or near-optimal)


@dataclass(frozen=True)
class TheoryResult:
    config: TheoryConfig
    lipschitz: float  # an upper bound on f's Lipschitz constant
    cells: Mapping[str, Mapping[str, Cell]]  # train regime -> test regime -> cell
    references: Mapping[str, Mapping[str, Cell]]  # reference predictor -> test regime -> cell
    scalars: Mapping[str, Mapping[str, float]]  # train regime -> beta, gamma, b, fhat_mse
    claims: Sequence[Claim]
    seconds: float = 0.0  # wall time of `run_theory` (not written: it would break equal bytes)

    def best(self, test: str) -> float:
        return min(self.cells[r][test].mse for r in TRAIN_REGIMES)

    def assumption(self) -> dict[str, float | bool]:
        """Assumption (A) of section 3 on this config: ICL from near examples beats fhat alone, which
        beats ICL from random examples (near: the worse of copy-nearest under One-Near and the context
        mean under Similar; random: the better of the two under Random)."""
        refs = self.references
        near = max(refs["copy nearest"]["one-near"].mse, refs["context mean"]["similar"].mse)
        iwl = refs["fhat alone"]["random"].mse
        far = min(refs["copy nearest"]["random"].mse, refs["context mean"]["random"].mse)
        return {"icl_near": near, "iwl": iwl, "icl_random": far, "holds": near < iwl < far}
