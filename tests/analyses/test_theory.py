"""`icl-bench theory`: the minimal model of seed 1 section 3 (SPEC 5).  The samplers' similarity
constraints, the forward pass against a hand computation, determinism, the paper's cases 1-5 judged on
the table the default command writes (the same criteria as theory.md), and the CLI's bad inputs."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import error_line, run_cli

from icl_bench.analyses import theory
from icl_bench.analyses.theory import (
    AVERAGING,
    BAD,
    COPYING,
    DOMINANT,
    FALLBACK,
    NEAR_OPTIMAL,
    TEST_REGIMES,
    TRAIN_REGIMES,
    Batch,
    Check,
    MinimalModel,
    TheoryConfig,
)
from icl_bench.core.errors import UsageError

SMALL = ("--d", "4", "--k", "2", "--steps", "20")


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """The default `icl-bench theory`, run once in a fresh process: (process, theory.json, out folder)."""
    root = tmp_path_factory.mktemp("theory")
    done = run_cli("theory", "--out", str(root / "out"), cwd=root)
    assert done.returncode == 0, done.stderr
    return done, json.loads((root / "out" / "theory.json").read_text()), root / "out"


# --- samplers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 16])
def test_far_and_near_points_meet_their_similarity_bounds(d):
    rng = np.random.default_rng(0)
    x = theory.sphere(rng, 500, d)
    far, near = theory.far(rng, x, 4, 0.3), theory.near(rng, x, 4, 0.01)
    for points in (x, far.reshape(-1, d), near.reshape(-1, d)):
        assert np.allclose(np.linalg.norm(points, axis=-1), 1.0, atol=1e-12)
    assert np.einsum("nd,nkd->nk", x, far).max() <= 0.3
    sims = np.einsum("nd,nkd->nk", x, near)
    assert sims.min() >= 0.99 - 1e-12 and sims.max() <= 1 + 1e-12


@pytest.mark.parametrize("d", [3, 6])
def test_near_points_are_uniform_on_the_cap(d):
    """The cap sampler's similarities match those of uniform sphere points that land on the cap (in R^3
    the height is uniform, Archimedes; in R^6 the Beta rejection step matters)."""
    rng = np.random.default_rng(1)
    x = np.eye(d)[:1]
    uniform = theory.sphere(rng, 400_000, d)[:, 0]
    reference = uniform[uniform >= 0.8]
    sampled = np.einsum("nd,nkd->nk", x, theory.near(rng, x, len(reference), 0.2))[0]
    edges = np.quantile(reference, [0.25, 0.5, 0.75])
    fractions = np.histogram(sampled, bins=[0.8, *edges, 1.0])[0] / len(sampled)
    assert len(reference) > 3000 and np.all(np.abs(fractions - 0.25) < 0.03), fractions


@pytest.mark.parametrize("regime", [*TRAIN_REGIMES])
def test_each_regime_draws_contexts_within_its_constraints(regime):
    config = TheoryConfig(d=8, k=5, delta=0.2, eps=0.05)
    rng = np.random.default_rng(2)
    x = theory.sphere(rng, 400, config.d)
    sims = np.einsum("nd,nkd->nk", x, theory.contexts(rng, x, regime, config))
    near, far = sims >= 1 - config.eps - 1e-12, sims <= config.delta
    assert np.all(near | far)
    kinds = {"random": [0], "similar": [5], "one-near": [1]}
    kinds |= {"random+similar": [0, 5], "contrastive": [0, 1]}
    counts = near.sum(1)
    assert set(counts.tolist()) == set(kinds[regime])  # every kind occurs (p_random = 0.5, 400 draws)


# --- the model -----------------------------------------------------------------------------------------


def tiny_batch() -> Batch:
    """One query x* = e1 and two context points: x_1 = e1 (sim 1), x_2 = e2 (sim 0)."""
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    xs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    return Batch(
        x, xs, torch.tensor([[2.0, -1.0]], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    )


def fixed_model(beta: float, gamma: float, b: float, fhat: float, d: int = 2) -> MinimalModel:
    """A model whose fhat is the constant `fhat` (all weights zero, output bias `fhat`)."""
    model = MinimalModel(d, 3)
    with torch.no_grad():
        for name, value in (("beta", beta), ("gamma", gamma), ("b", b)):
            getattr(model, name).fill_(value)
        for parameter in model.fhat.parameters():
            parameter.zero_()
        model.fhat[2].bias.fill_(fhat)
    return model


def test_zero_logits_weigh_context_eoc_and_query_uniformly():
    weights, values = fixed_model(0.0, 0.0, 0.0, 5.0).attention(tiny_batch())
    assert torch.allclose(weights, torch.full((1, 4), 0.25, dtype=torch.float64))
    assert values.tolist() == [[2.0, -1.0, 0.5, 5.0]]  # y_1, y_2, ybar, fhat(x*)
    assert fixed_model(0.0, 0.0, 0.0, 5.0)(tiny_batch()).item() == pytest.approx((2 - 1 + 0.5 + 5) / 4)


def test_forward_matches_a_hand_computed_softmax():
    beta, gamma, b, fhat = 2.0, -1.0, 0.5, 3.0
    # logits: x_1: beta * 1 + b; x_2: beta * 0 + b; EOC: gamma * <e1, (e1 + e2) / 2> + b; query: 0
    logits = [beta + b, b, gamma * 0.5 + b, 0.0]
    values = [2.0, -1.0, 0.5, fhat]
    z = sum(math.exp(logit) for logit in logits)
    expected = sum(math.exp(logit) / z * v for logit, v in zip(logits, values, strict=True))
    assert fixed_model(beta, gamma, b, fhat)(tiny_batch()).item() == pytest.approx(expected, rel=1e-12)


def test_a_very_negative_bias_falls_back_to_fhat():
    assert fixed_model(1.0, 1.0, -60.0, 3.0)(tiny_batch()).item() == pytest.approx(3.0)


# --- mechanisms: where the attention goes, on models whose masses are known ---------------------------


def cell_of(model: MinimalModel, batch: Batch) -> theory.Cell:
    """The batch's cell, its one query taken twice (an interval over a single query is undefined)."""
    return theory.evaluate(model, Batch(*(torch.cat([t, t]) for t in (batch.x, batch.xs, batch.ys, batch.y))))


def test_the_mechanism_masses_partition_the_attention_as_computed_by_hand():
    """beta = 2, gamma = -1, b = 0.5 on the tiny batch: logits x_1 2.5, x_2 0.5, EOC 0, query 0."""
    model = fixed_model(2.0, -1.0, 0.5, 3.0)
    z = math.exp(2.5) + math.exp(0.5) + 1 + 1
    w1, w2, eoc, query = math.exp(2.5) / z, math.exp(0.5) / z, 1 / z, 1 / z
    cell = cell_of(model, tiny_batch())
    assert cell.query == pytest.approx(query, rel=1e-12)
    assert cell.averaging == pytest.approx(eoc + 2 * w2, rel=1e-12)  # the EOC + the even share k x min
    assert cell.copying == pytest.approx(w1 - w2, rel=1e-12)  # the nearest token (x_1) beyond that share
    assert cell.query + cell.averaging + cell.copying == pytest.approx(1.0, rel=1e-12)  # k = 2: no rest
    assert cell.dominant() == COPYING and w1 - w2 > DOMINANT


@pytest.mark.parametrize(
    ("beta", "gamma", "b", "mechanism"),
    [
        (1.0, 1.0, -60.0, FALLBACK),  # b -> -inf: every logit but the query's sinks (case 1)
        (0.0, 60.0, 0.0, AVERAGING),  # gamma -> inf: the EOC token, value ybar (case 2a)
        (0.0, 0.0, 60.0, AVERAGING),  # b -> +inf, beta = gamma = 0: all labels alike, no EOC (case 2b)
        (60.0, 0.0, -30.0, COPYING),  # beta -> inf: the nearest token alone (case 3)
    ],
)
def test_a_model_set_by_hand_is_read_as_its_mechanism(beta, gamma, b, mechanism):
    cell = cell_of(fixed_model(beta, gamma, b, 3.0), tiny_batch())
    assert cell.dominant() == mechanism and cell.mass(mechanism) > 0.99
    assert all(cell.mass(m) < 0.01 for m in theory.MECHANISMS if m != mechanism)


def test_a_query_that_dominates_is_fallback_not_averaging():
    """The issue behind turn 3: a model falling back to fhat fails to use the near example too, but it is
    not averaging labels, and a check expecting averaging must say so."""
    cell = cell_of(fixed_model(0.0, 5.0, -8.0, 3.0), tiny_batch())
    check = Check.of(cell, "one-near", AVERAGING)
    assert check.dominant == FALLBACK and not check.holds
    assert check.fallback > DOMINANT > check.averaging > 0
    assert Check.of(cell, "one-near", FALLBACK).holds


def test_no_mechanism_dominates_when_the_attention_is_split():
    cell = cell_of(fixed_model(0.0, 0.0, 0.0, 3.0), tiny_batch())  # 1/4 on each of x_1, x_2, EOC, query
    assert (cell.query, cell.averaging, cell.copying) == pytest.approx((0.25, 0.75, 0.0))
    assert cell.dominant() == AVERAGING  # the even share of the two labels plus the EOC: their average
    split = cell_of(fixed_model(0.0, -60.0, math.log(2.0), 3.0), tiny_batch())  # x_1, x_2: 2/5; query 1/5
    assert split.dominant() == AVERAGING
    half = theory.Cell(1.0, 0.0, query=0.5, averaging=0.5, copying=0.0)
    assert half.dominant() == "none"  # exactly half is not more than every other place together


def hand_set(config: TheoryConfig, case_4: tuple[float, float, float]) -> theory.TheoryResult:
    """Every regime's model set by hand (fhat = 0, y's mean), tested and judged as the command does:
    random falls back, similar averages, one-near copies the near label and falls back under Random,
    contrastive copies as one-near does, and random+similar has (beta, gamma, b) = `case_4`."""
    d = config.d
    models = {
        "random": fixed_model(0.0, 0.0, -60.0, 0.0, d),
        "similar": fixed_model(0.0, 0.0, 60.0, 0.0, d),
        "one-near": fixed_model(200.0, 0.0, -150.0, 0.0, d),
        "random+similar": fixed_model(*case_4, 0.0, d),
        "contrastive": fixed_model(200.0, 0.0, -150.0, 0.0, d),
    }
    fhat = fixed_model(0.0, 0.0, 0.0, 0.0, d).fhat
    return theory.tabulate(config, theory.make_target(config), models, fhat)


def claim_of(result: theory.TheoryResult, case: int) -> theory.Claim:
    (claim,) = [c for c in result.claims if c.case == case]
    return claim


@pytest.fixture(scope="module")
def hand_config():
    return TheoryConfig(n_test=1000)


def test_case_4_falling_back_under_one_near_is_not_averaging(hand_config):
    """The committed table's case 4 before turn 3: random+similar puts its weight on the query under
    One-Near and is bad there; the paper's mechanism is averaging, so the case does not reproduce, and
    the note proves from the scalars that neither the EOC nor the near token can outbid the query."""
    claim = claim_of(hand_set(hand_config, (0.0, 0.0, -60.0)), 4)
    checks = {c.test: c for c in claim.checks}
    assert [c.test for c in claim.checks] == ["random", "similar", "one-near"]
    assert checks["one-near"].expected == AVERAGING and checks["one-near"].dominant == FALLBACK
    assert checks["one-near"].fallback > 0.99 and not checks["one-near"].holds
    assert checks["random"].holds and not checks["similar"].holds
    assert claim.mse_holds  # bad under One-Near (copying models set the column's best) ...
    assert not claim.reproduces  # ... for the wrong mechanism
    assert "falls back to fhat instead of averaging" in claim.note
    assert "averaging 0.000 under One-Near (fallback 1.000 dominates)" in claim.observed


def test_case_4_reproduces_when_it_averages_under_one_near(hand_config):
    """The paper's Case 4 limit: gamma large, b between the Random and the One-Near <x*, xbar>, so the
    EOC token takes the weight when the context mean is near x* (Similar, and One-Near mostly) and the
    query takes it under Random; the near label is averaged with k-1 random ones: bad, by averaging."""
    result = hand_set(hand_config, (0.0, 200.0, -30.0))
    claim = claim_of(result, 4)
    assert all(c.holds for c in claim.checks), claim.observed
    assert claim.mse_holds and claim.reproduces and claim.note == ""
    assert claim_of(result, 1).reproduces  # random: fallback under Random and One-Near, bad there
    assert claim_of(result, 2).checks[1].dominant == AVERAGING  # similar averages random labels too
    copying = claim_of(result, 3)  # one-near copies the near label but falls back under Random
    assert [c.dominant for c in copying.checks] == [COPYING, FALLBACK] and not copying.reproduces
    # contrastive: fhat under Random, copies under One-Near; under Similar beta 200 still weighs the near
    # labels nearly alike (their similarities lie within eps = 0.01), which is the paper's weighted average
    contrastive = claim_of(result, 5)
    assert [c.dominant for c in contrastive.checks] == [FALLBACK, COPYING, AVERAGING]
    assert contrastive.reproduces


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("d", 1, "d must be an integer >= 2 (pass --d 2 or more), got 1"),
        ("k", 1, "k must be an integer >= 2 (pass --k 2 or more), got 1"),
        ("delta", 0.995, "delta must be in [0, 1 - eps)"),
        ("d", 4000, "a cap of eps=0.01 in d=4000 is too thin to sample exactly"),
        ("steps", 0, "steps must be a positive integer, got 0"),
    ],
)
def test_bad_configs_are_one_line_usage_errors(field, value, needle):
    with pytest.raises(UsageError, match=r"^theory config: ") as error:
        TheoryConfig(**{field: value})
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_equal_configs_give_equal_bytes():
    config = TheoryConfig(d=4, k=3, steps=30, batch=32, n_test=200, seed=5)
    first, second = (theory.render(theory.run_theory(config)) for _ in range(2))
    assert first == second
    assert (
        theory.render(theory.run_theory(TheoryConfig(d=4, k=3, steps=30, batch=32, n_test=200, seed=6)))[
            "theory.json"
        ]
        != first["theory.json"]
    )


# --- the paper's cases on the default table ------------------------------------------------------------
# The same criteria as `theory.judge` (and theory.md), recomputed here from theory.json's numbers: per case
# the mechanism the paper names under each test regime, and the MSE consequence (written out again here,
# not imported, so a change to theory.CASES must be made twice).

EXPECTED = {
    1: ("random", {"random": FALLBACK, "one-near": FALLBACK}, "one-near"),
    2: ("similar", {"similar": AVERAGING, "random": AVERAGING}, "random"),
    3: ("one-near", {"one-near": COPYING, "random": COPYING}, "random"),
    4: ("random+similar", {"random": FALLBACK, "similar": AVERAGING, "one-near": AVERAGING}, "one-near"),
    5: ("contrastive", {"random": FALLBACK, "one-near": COPYING, "similar": AVERAGING}, None),
}


def ratio(data: dict, regime: str, test: str) -> float:
    best = min(data["cells"][r][test]["mse"] for r in TRAIN_REGIMES)
    return data["cells"][regime][test]["mse"] / best


def dominant(cell: dict) -> str:
    """The mechanism with more than DOMINANT of a cell's mean attention: fallback is the query's mass."""
    masses = {FALLBACK: cell["query"], AVERAGING: cell["averaging"], COPYING: cell["copying"]}
    return next((m for m, mass in masses.items() if mass > DOMINANT), "none")


def claim(data: dict, case: int) -> dict:
    (found,) = [c for c in data["claims"] if c["case"] == case]
    return found


def recomputed(data: dict, case: int) -> tuple[dict[str, str], bool]:
    """(test regime -> dominant mechanism, whether the MSE criterion holds) from the cells alone."""
    regime, _, bad_under = EXPECTED[case]
    dominants = {t: dominant(data["cells"][regime][t]) for t in EXPECTED[case][1]}
    if bad_under is None:
        return dominants, all(ratio(data, regime, t) <= NEAR_OPTIMAL for t in TEST_REGIMES)
    return dominants, ratio(data, regime, bad_under) >= BAD


@pytest.mark.parametrize("case", [1, 2, 3, 4, 5])
def test_each_verdict_is_its_criterion_recomputed_from_the_cells(default, case):
    _, data, _ = default
    dominants, mse_holds = recomputed(data, case)
    said = claim(data, case)
    assert said["regime"] == EXPECTED[case][0]
    assert [(c["test"], c["expected"], c["dominant"]) for c in said["checks"]] == [
        (t, m, dominants[t]) for t, m in EXPECTED[case][1].items()
    ]
    assert said["mse_holds"] == mse_holds
    assert said["reproduces"] == (dominants == EXPECTED[case][1] and mse_holds)
    for cell in (data["cells"][EXPECTED[case][0]][t] for t in TEST_REGIMES):
        assert cell["query"] + cell["averaging"] + cell["copying"] <= 1 + 1e-6


def test_the_default_verdicts_as_they_came_out(default):
    """The default table judged by mechanism (turn 3): cases 1, 2 and 5 reproduce; 3 and 4 do not.
    Asserted as the observed outcome (not xfail): a change that flips a verdict should fail loudly here
    and in theory.md alike."""
    _, data, _ = default
    assert {c["case"]: c["reproduces"] for c in data["claims"]} == {
        1: True,
        2: True,
        3: False,
        4: False,
        5: True,
    }
    assert data["scalars"]["random"]["b"] < 0  # case 1: b heads to -inf


def test_case_3_one_near_context_does_not_copy_a_random_label(default):
    """Trained on One-Near (every context also holds k-1 random examples), it copies the near label under
    One-Near but learns b low enough that no Random token outbids the query, so under a Random context it
    falls back to fhat rather than copying the closest label, and is not bad there."""
    _, data, _ = default
    checks = {c["test"]: c for c in claim(data, 3)["checks"]}
    assert checks["one-near"]["dominant"] == COPYING and checks["random"]["dominant"] == FALLBACK
    beta, b = data["scalars"]["one-near"]["beta"], data["scalars"]["one-near"]["b"]
    assert b + max(beta * data["config"]["delta"], -beta) < 0
    assert ratio(data, "one-near", "random") < BAD
    assert "falls back to its own fhat" in claim(data, 3)["note"]


def test_case_4_random_plus_similar_fails_under_one_near_by_fallback_not_averaging(default):
    """Before turn 3 this case was judged "reproduces": bad under One-Near with little mass on the near
    token.  The paper's mechanism there is averaging the labels; the model puts its weight on the query
    (fhat) instead, so the case does not reproduce, although its MSE consequence holds."""
    _, data, _ = default
    said = claim(data, 4)
    checks = {c["test"]: c for c in said["checks"]}
    assert checks["random"]["holds"] and checks["similar"]["holds"]  # fhat / averaging, as the paper says
    assert checks["one-near"]["dominant"] == FALLBACK and checks["one-near"]["averaging"] < DOMINANT
    assert said["mse_holds"] and not said["reproduces"]
    assert "falls back to fhat instead of averaging the labels" in said["note"]


def test_assumption_a_holds_for_the_defaults(default):
    _, data, _ = default
    a = data["assumption_a"]
    assert a["holds"] and a["icl_near"] < a["iwl"] < a["icl_random"]


# --- the command ---------------------------------------------------------------------------------------


def test_the_default_command_prints_the_grid_and_writes_three_files(default):
    done, data, out = default
    assert sorted(p.name for p in out.iterdir()) == ["theory.json", "theory.md", "theory.png"]
    *tables, json_path, md_path, png_path = done.stdout.strip().splitlines()
    assert [json_path, md_path, png_path] == [
        str(out / n) for n in ("theory.json", "theory.md", "theory.png")
    ]
    assert "minimal model: test MSE" in done.stdout and "does not reproduce" in done.stdout
    assert max(len(line) for line in tables) <= 80
    assert "theory trained contrastive" in done.stderr and "MSE" not in done.stderr
    markdown = (out / "theory.md").read_text()
    assert "## Claims" in markdown and "Case 3 (one-near) does not reproduce" in markdown
    assert "Case 4 (random+similar) does not reproduce" in markdown
    assert (
        "| 4 | random+similar | One-Near | averaging | 0.919 | 0.056 | 0.021 | fallback | **no** |"
        in markdown
    )
    assert "mechanisms: expected vs attention mass" in done.stdout
    assert (out / "theory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["config"] == {**data["config"], "d": 16, "k": 4, "seed": 0, "steps": 1500}


def test_a_small_config_end_to_end_twice_gives_equal_bytes(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        done = run_cli("theory", *SMALL, "--seed", "3", "--out", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    for name in ("theory.json", "theory.md", "theory.png"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    config = json.loads((outs[0] / "theory.json").read_text())["config"]
    assert (config["d"], config["k"], config["steps"], config["seed"]) == (4, 2, 20, 3)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--d", "1"), "theory config: d must be an integer >= 2 (pass --d 2 or more), got 1"),
        (("--k", "1"), "theory config: k must be an integer >= 2 (pass --k 2 or more), got 1"),
        (("--k", "two"), "argument --k: invalid int value: 'two'"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, needle):
    line = error_line(run_cli("theory", *args, "--out", str(tmp_path / "out"), cwd=tmp_path))
    assert needle in line


def test_an_unwritable_out_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run_cli("theory", *SMALL, "--out", str(blocker / "inside"), cwd=tmp_path)
    line = error_line(done)
    assert (
        f"{blocker / 'inside'} is not writable (Not a directory); pass a writable folder with --out" in line
    )
    assert "trained" not in done.stderr
