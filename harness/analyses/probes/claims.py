"""The probe claims P1-P3 (SPEC section 8) and what they are judged on: a model state (`regime@step`, the
base model as step 0), the probe values of one (task, model) over its states, and the paired comparisons
at each regime's last snapshot that `claims.judge` turns into verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from icl_bench.analyses.probes.scores import LABELS, NOT_DEFINED, PROBES, defined_for_task
from icl_bench.core.names import BASE
from icl_bench.score import claims


def series(regime: str, step: int | None) -> str:
    """A model state's name in the claims: `regime@step` (`regime@last` for a regime that did not run)."""
    return f"{regime}@{'last' if step is None else step}"


def _contrast(a: str, b: str, probe: str, relation: claims.Relation) -> claims.Comparison:
    terms = (claims.Term(a, probe), claims.Term(b, probe, -1.0))
    return claims.Comparison(f"{LABELS[probe]}: {a} {relation} {b}", terms, relation)


def probe_claims(last: Mapping[str, int], copy_defined: bool = True) -> list[claims.Claim]:
    """P1-P3 at each regime's last snapshot (`last`: regime -> its last step).  P2's first checkpoint is
    step 0, the base model, and "does not decrease by more than its CI" is the non-inferiority test
    ICL(contrastive, last) - ICL(base) >= -margin (the claims machinery's `>=`).  Where the copy probe is
    not defined for the task (`copy_defined` False), P3's statement says so; its scores are left out, so
    it is "not run"."""

    def at(regime: str) -> str:
        return series(regime, last.get(regime))

    first = series(BASE, 0)
    return [
        claims.Claim(
            "P1",
            "similar-context training learns less in weights",
            (
                _contrast(at("similar"), at("random"), "iwl", "<"),
                _contrast(at("similar"), at("contrastive"), "iwl", "<"),
            ),
        ),
        claims.Claim(
            "P2",
            "random-context training loses ICL over training; contrastive keeps it",
            (_contrast(at("random"), first, "icl", "<"), _contrast(at("contrastive"), first, "icl", ">=")),
        ),
        claims.Claim(
            "P3",
            "similar-context training copies labels blindly"
            + ("" if copy_defined else f" (not run: the copy probe is {NOT_DEFINED} on this task)"),
            (
                _contrast(at("similar"), at("contrastive"), "copy", ">"),
                _contrast(at("similar"), at("random"), "copy", ">"),
            ),
        ),
    ]


@dataclass(frozen=True)
class State:
    """A model state: the base model (regime `base`, step 0, no folder) or a regime's snapshot."""

    regime: str
    step: int
    folder: Path | None = None

    @property
    def name(self) -> str:
        return series(self.regime, self.step)


@dataclass(frozen=True)
class Probed:
    """The probe values of one (task, model): per state, per probe, per item (in `ids` order)."""

    task: str
    model: str
    split: str
    k: int
    ids: tuple[str, ...]
    states: tuple[State, ...]
    values: Mapping[str, Mapping[str, Sequence[float | None]]]  # state name -> probe -> values (None:
    # a copy value not defined for that example)

    def last(self) -> dict[str, int]:
        """Each trained regime's last snapshot step."""
        found: dict[str, int] = {}
        for state in self.states:
            if state.regime != BASE:
                found[state.regime] = max(found.get(state.regime, 0), state.step)
        return found

    def undefined(self) -> int:
        """How many probe examples have no copy value (in some state; it depends on the context only)."""
        return sum(
            any(self.values[state.name]["copy"][i] is None for state in self.states)
            for i in range(len(self.ids))
        )

    def copy_defined(self) -> bool:
        """False when most probe examples have no copy value: the copy probe is not defined here."""
        return defined_for_task(self.undefined(), len(self.ids))

    def scores(self) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
        """The claims machinery's scores: (state, probe) -> {(example id, probe): value}; undefined
        values are left out, and so is the copy probe where it is not defined for the task."""
        kept = PROBES if self.copy_defined() else tuple(p for p in PROBES if p != "copy")
        return {
            (state, probe): {
                (rid, probe): v for rid, v in zip(self.ids, values, strict=True) if v is not None
            }
            for state, by_probe in self.values.items()
            for probe, values in by_probe.items()
            if probe in kept
        }
