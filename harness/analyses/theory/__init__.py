"""The minimal model of seed 1 section 3 and appendix A (SPEC 5): when does a two-layer transformer
trained with in-context examples learn ICL, IWL, blind copying, or a switch between them?

Inputs x lie on the unit sphere in R^d and y = f(x) for a fixed random 2-layer MLP f (Lipschitz).  At
the query x* the model mixes three kinds of values by one softmax:

    context token i   logit beta * <x*, x_i> + b       value y_i
    end of context    logit gamma * <x*, xbar> + b     value ybar        (means over the context)
    the query itself  logit 0                          value fhat(x*)    (in-weights MLP, small budget)

and y_hat is the weighted sum; beta, gamma, b and fhat are learned on squared loss.  One model is
trained per context regime and tested under Random, Similar and One-Near contexts:

    result = run_theory(TheoryConfig())
    write_theory(result, Path("leaderboards/theory"))   # theory.json, theory.md, theory.png

Plain torch and numpy, CPU, float64; every random draw comes from a generator seeded by the config, so
equal configs give equal bytes.  No other stage imports this package.

The package, in the order the data flows: config (regimes, criteria, TheoryConfig), data (the target
and the contexts on the sphere), model (MinimalModel and its training), results (Cell, Check, Claim,
TheoryResult), cases (the paper's cases 1-5 and `judge`), experiment (`run_theory`), report
(theory.json/.md/.png and the terminal tables).
"""

from icl_bench.analyses.theory.cases import CASES, Case, judge
from icl_bench.analyses.theory.config import (
    AVERAGING,
    BAD,
    COPYING,
    DOMINANT,
    FALLBACK,
    LABELS,
    MECHANISMS,
    NEAR_OPTIMAL,
    REFERENCES,
    TEST_REGIMES,
    TRAIN_REGIMES,
    Z95,
    TheoryConfig,
)
from icl_bench.analyses.theory.data import (
    Batch,
    Target,
    contexts,
    draw,
    far,
    make_target,
    near,
    sphere,
    stream,
)
from icl_bench.analyses.theory.experiment import (
    evaluate,
    references,
    run_theory,
    summary,
    tabulate,
    test_sets,
)
from icl_bench.analyses.theory.model import MinimalModel, fit, initial, one_thread, train, train_fhat_alone
from icl_bench.analyses.theory.report import (
    MECHANISM_MASSES,
    json_text,
    markdown,
    plot_png,
    render,
    rich_tables,
    write_theory,
)
from icl_bench.analyses.theory.results import Cell, Check, Claim, TheoryResult

__all__ = [
    "AVERAGING",
    "BAD",
    "CASES",
    "COPYING",
    "DOMINANT",
    "FALLBACK",
    "LABELS",
    "MECHANISMS",
    "MECHANISM_MASSES",
    "NEAR_OPTIMAL",
    "REFERENCES",
    "TEST_REGIMES",
    "TRAIN_REGIMES",
    "Z95",
    "Batch",
    "Case",
    "Cell",
    "Check",
    "Claim",
    "MinimalModel",
    "Target",
    "TheoryConfig",
    "TheoryResult",
    "contexts",
    "draw",
    "evaluate",
    "far",
    "fit",
    "initial",
    "json_text",
    "judge",
    "make_target",
    "markdown",
    "near",
    "one_thread",
    "plot_png",
    "references",
    "render",
    "rich_tables",
    "run_theory",
    "sphere",
    "stream",
    "summary",
    "tabulate",
    "test_sets",
    "train",
    "train_fhat_alone",
    "write_theory",
]
