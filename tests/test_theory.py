"""`icl-bench theory`: the minimal model of seed 1 section 3 (SPEC 5).  The samplers' similarity
constraints, the forward pass against a hand computation, determinism, the paper's cases 1-5 judged on
the table the default command writes (the same criteria as theory.md), and the CLI's bad inputs."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import error_line, run_cli

from icl_bench import theory
from icl_bench.errors import UsageError
from icl_bench.theory import (
    BAD,
    COPY,
    FALLBACK,
    NEAR_OPTIMAL,
    TEST_REGIMES,
    TRAIN_REGIMES,
    Batch,
    MinimalModel,
    TheoryConfig,
)

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


def fixed_model(beta: float, gamma: float, b: float, fhat: float) -> MinimalModel:
    """A model whose fhat is the constant `fhat` (all weights zero, output bias `fhat`)."""
    model = MinimalModel(2, 3)
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
# The same criteria as `theory.judge` (and theory.md), recomputed here from theory.json's numbers.


def ratio(data: dict, regime: str, test: str) -> float:
    best = min(data["cells"][r][test]["mse"] for r in TRAIN_REGIMES)
    return data["cells"][regime][test]["mse"] / best


def verdict(data: dict, case: int) -> bool:
    (claim,) = [c for c in data["claims"] if c["case"] == case]
    return claim["reproduces"]


def test_assumption_a_holds_for_the_defaults(default):
    _, data, _ = default
    a = data["assumption_a"]
    assert a["holds"] and a["icl_near"] < a["iwl"] < a["icl_random"]


def test_case_1_random_context_falls_back_to_fhat(default):
    _, data, _ = default
    cells = data["cells"]["random"]
    assert cells["random"]["query"] >= FALLBACK and ratio(data, "random", "one-near") >= BAD
    assert data["scalars"]["random"]["b"] < 0
    assert verdict(data, 1)


def test_case_2_similar_context_averages_labels_and_fails_on_random(default):
    _, data, _ = default
    cell = data["cells"]["similar"]["random"]
    assert cell["context"] + cell["eoc"] >= 0.5 and ratio(data, "similar", "random") >= BAD
    assert verdict(data, 2)


def test_case_3_one_near_context_does_not_copy_a_random_label(default):
    """Does NOT reproduce, and this test asserts what the faithful model does instead: trained on
    One-Near (every context also holds k-1 random examples), it learns b low enough that no Random
    token outbids the query, so under a Random context it falls back to fhat rather than copying the
    closest label.  Asserted as the observed outcome (not xfail): the verdict is a result of the
    reconstruction, and a change that flips it should fail loudly here and in theory.md alike."""
    _, data, _ = default
    cell = data["cells"]["one-near"]["random"]
    assert cell["nearest"] < COPY and cell["query"] > 0.5
    beta, b = data["scalars"]["one-near"]["beta"], data["scalars"]["one-near"]["b"]
    assert b + max(beta * data["config"]["delta"], -beta) < 0
    assert ratio(data, "one-near", "random") < BAD
    assert not verdict(data, 3)


def test_case_4_random_plus_similar_fails_to_use_the_near_example(default):
    _, data, _ = default
    cell = data["cells"]["random+similar"]["one-near"]
    assert cell["nearest"] < COPY and ratio(data, "random+similar", "one-near") >= BAD
    assert verdict(data, 4)


def test_case_5_contrastive_is_near_optimal_in_every_column(default):
    _, data, _ = default
    assert all(ratio(data, "contrastive", test) <= NEAR_OPTIMAL for test in TEST_REGIMES)
    assert verdict(data, 5)


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
