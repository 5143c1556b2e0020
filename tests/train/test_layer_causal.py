"""Layer-causal fine-tuning (SPEC 6) on the `tiny` model: the logit lens reproduces the model's logits, one
batch steps layer after layer (the top layer learns from the output of the bottom layer as already
updated, which the simultaneous variant would not), a layer's gradient does not depend on the layers above
it (as it does under the causal-LM loss), gradient norm clipping says when it acted, and a training run
logs per-layer gradient norms and where its clip acted."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import reverse_records
from safetensors.torch import load_file

from icl_bench.core.errors import UsageError
from icl_bench.models import decoder_layers, load, logit_lens
from icl_bench.train.config import TrainConfig
from icl_bench.train.data import IGNORE, Collator, encode
from icl_bench.train.objectives import causal_lm_loss, clip_gradients, layer_causal_steps
from icl_bench.train.trainer import train


@pytest.fixture(scope="module")
def records():
    return reverse_records(8, seed=1)


@pytest.fixture()
def model_and_batch(tiny, records):
    model, tokenizer = load(tiny[0], "fp32")
    batch = Collator(tokenizer.pad_token_id)(encode(records[:3], tokenizer, 64))
    return model, {key: value.to(model.device) for key, value in batch.items()}


def layer_outputs(model, batch) -> list[torch.Tensor]:
    """Every decoder layer's output on `batch` (no detaching), bottom to top, from the model's own
    forward pass."""
    outputs: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(
            lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out)
        )
        for layer in decoder_layers(model)
    ]
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def exit_loss(model, batch, hidden: torch.Tensor) -> torch.Tensor:
    """The label NLL of hidden states read through the logit lens (mean over label tokens)."""
    labels = batch["labels"][:, 1:]
    kept = labels != IGNORE
    return F.cross_entropy(logit_lens(model)(hidden[:, :-1][kept]), labels[kept])


def sgd(lr: float):
    """A `layer_causal_steps` step: plain SGD on the layer's gradient, which it then clears."""

    def step(number, layer):
        with torch.no_grad():
            for param in layer.parameters():
                if param.grad is not None:
                    param.sub_(lr * param.grad)
                    param.grad = None

    return step


def test_decoder_anatomy(model_and_batch):
    from peft import LoraConfig, get_peft_model

    model, batch = model_and_batch
    layers = decoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers == 2
    with torch.no_grad():
        top = layer_outputs(model, batch)[-1]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert torch.allclose(logit_lens(model)(top), logits, atol=1e-5)
        wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
        assert all(a is b for a, b in zip(decoder_layers(wrapped), layers, strict=True))
        assert torch.allclose(logit_lens(wrapped)(top), logits, atol=1e-5)
    with pytest.raises(UsageError, match=r"^unknown decoder architecture Linear:"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_without_updates_the_loss_is_the_sum_of_the_layer_exits(model_and_batch):
    """A step that changes nothing: the layers are called as the model calls them, so the summed exit
    losses are those of the model's own forward pass, and the top exit is the model's own loss."""
    model, batch = model_and_batch
    seen = []

    def step(number, layer):
        seen.append(number)
        model.zero_grad(set_to_none=True)

    total = layer_causal_steps(model, batch, step)
    with torch.no_grad():
        exits = [exit_loss(model, batch, h) for h in layer_outputs(model, batch)]
        assert exits[-1].item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)
    assert seen == [0, 1]
    assert total.item() == pytest.approx(sum(exits).item(), rel=1e-5)


def test_causal_lm_loss_is_the_models_own_with_the_same_gradients(model_and_batch):
    """Logits at label positions only (`causal_lm_loss`) give the model's own loss and gradients."""
    model, batch = model_and_batch
    ours = causal_lm_loss(model, batch)
    theirs = model(**batch).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    grads = [torch.autograd.grad(loss, list(model.parameters())) for loss in (ours, theirs)]
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*grads, strict=True))
    count = int((batch["labels"][:, 1:] != IGNORE).sum())
    summed = causal_lm_loss(model, batch, num_items_in_batch=2 * count)  # the Trainer's accumulated count
    assert summed.item() == pytest.approx(theirs.item() / 2, rel=1e-6)


def by_hand(model, batch, lr: float, sequential: bool) -> torch.nn.Module:
    """One SGD step per layer on its own exit loss, from the model's full forward pass: `sequential`
    takes layer l's gradient after layers 1..l-1 moved, else every gradient at the old weights (the
    simultaneous variant: summed exits of detached inputs, one step)."""
    model = copy.deepcopy(model)
    layers = decoder_layers(model)
    if not sequential:
        outputs = layer_outputs(model, batch)
        grads = [
            torch.autograd.grad(exit_loss(model, batch, out), list(layer.parameters()))
            for layer, out in zip(layers, outputs, strict=True)
        ]
    for number, layer in enumerate(layers):
        if sequential:
            out = layer_outputs(model, batch)[number]
            grad = torch.autograd.grad(exit_loss(model, batch, out), list(layer.parameters()))
        else:
            grad = grads[number]
        with torch.no_grad():
            for param, g in zip(layer.parameters(), grad, strict=True):
                param.sub_(lr * g)
    return model


def test_layer_causal_steps_update_layer_after_layer(model_and_batch):
    """The top layer's step follows the bottom layer's: it matches a hand-made sequential update and not
    the simultaneous one (whose top-layer gradient sees the old bottom layer); the embeddings, final
    norm and unembedding, though trainable here, do not move."""
    model, batch = model_and_batch
    lr = 2.0
    sequential, simultaneous = by_hand(model, batch, lr, True), by_hand(model, batch, lr, False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    layer_causal_steps(model, batch, sgd(lr))
    after = dict(model.named_parameters())

    def close(other) -> dict[str, bool]:
        theirs = dict(other.named_parameters())
        return {n: torch.allclose(after[n], theirs[n], rtol=1e-4, atol=1e-6) for n in after}

    assert all(close(sequential).values())
    differs = [n for n, same in close(simultaneous).items() if not same]
    assert differs and all(n.startswith("model.layers.1.") for n in differs)  # the bottom layer agrees
    moved = {n for n in after if not torch.equal(after[n], before[n])}
    assert moved and all(n.startswith("model.layers.") for n in moved)


@pytest.mark.parametrize("objective", ["layer-causal", "causal-lm"])
def test_a_layer_learns_only_from_its_own_exit(model_and_batch, objective):
    model, batch = model_and_batch
    bottom, top = decoder_layers(model)

    def bottom_gradient() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        if objective == "causal-lm":
            model(**batch).loss.backward()
            return [param.grad.clone() for param in bottom.parameters()]
        kept: list[torch.Tensor] = []

        def step(number, layer):
            if number == 0:
                kept.extend(param.grad.clone() for param in layer.parameters())
            model.zero_grad(set_to_none=True)

        layer_causal_steps(model, batch, step)
        return kept

    before = bottom_gradient()
    assert all(grad.abs().sum() > 0 for grad in before)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # perturb only the layer above
        for param in top.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    after = bottom_gradient()
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(before, after, strict=True))
    assert same is (objective == "layer-causal")


def test_clip_gradients_says_when_it_acted():
    def params(*grads):
        out = []
        for g in grads:
            p = torch.nn.Parameter(torch.zeros(len(g)))
            p.grad = torch.tensor(g)
            out.append(p)
        return out

    ps = params([0.5, -3.0], [1.0, 2.0])  # l-inf norm 3, L2 norm sqrt(14.25)
    assert clip_gradients(ps, ("linf", 2.0))
    assert torch.allclose(ps[0].grad, torch.tensor([0.5, -3.0]) * 2 / 3, atol=1e-5)  # rescaled, not clamped
    assert torch.allclose(ps[1].grad, torch.tensor([1.0, 2.0]) * 2 / 3, atol=1e-5)
    ps = params([0.5, -3.0], [1.0, 2.0])
    assert not clip_gradients(ps, ("linf", 3.5)) and ps[0].grad.tolist() == [0.5, -3.0]
    assert not clip_gradients(ps, ("l2", 3.8)) and ps[1].grad.tolist() == [1.0, 2.0]
    assert clip_gradients(ps, ("l2", 1.0))
    assert math.hypot(*ps[0].grad.tolist(), *ps[1].grad.tolist()) == pytest.approx(1.0, rel=1e-5)
    assert not clip_gradients(params([100.0]), ("none", 0.0))
    assert not clip_gradients([torch.nn.Parameter(torch.zeros(2))], ("linf", 1e-9))  # no gradient


def layer_causal_run(tiny, records, tmp_path, clip: str, steps: int = 2):
    reference, spec = tiny
    config = TrainConfig(
        adapt="key-value", objective="layer-causal", clip=clip, optim="sgd", learning_rate=1.0,
        max_steps=steps, save_steps=100, snapshot_steps=1, precision="fp32",
    )  # fmt: skip
    out = tmp_path / clip.replace(":", "-")
    output = train(reference, spec, records, config, out / "model", out / "checkpoints")
    states = [load_file(Path(reference) / "model.safetensors")]
    states += [
        load_file(output / "snapshots" / f"step-{n}" / "model.safetensors") for n in range(1, steps + 1)
    ]
    return json.loads((output / "train_log.json").read_text()), states


def test_layer_causal_training_logs_where_its_clip_acted(tiny, records, tmp_path):
    """Unclipped, clipped between the layers' gradient norms, and clipped below all of them: the log
    counts a layer step as clipped exactly when its gradient's l-inf norm exceeds the bound, and plain SGD
    moves each layer's weights by at most lr * bound, by exactly that where the clip acted."""
    spec = tiny[1]
    free, free_states = layer_causal_run(tiny, records, tmp_path, "none")
    linf = free["layer_grad_linf"]
    assert len(linf) == 2 and all(len(row) == 2 for row in linf)
    assert free["clip_acted"] == [[False, False]] * 2 and free["clip_acted_fraction"] == 0.0
    for row, entry in zip(free["layer_grad_norms"], free["losses"], strict=True):
        assert math.hypot(*row) == pytest.approx(entry["grad_norm"], rel=1e-4)  # the layer steps' norm
    bottom, top = linf[0]
    assert bottom != top
    for bound, expected in [(math.sqrt(bottom * top), None), (min(min(r) for r in linf) / 10, True)]:
        log, states = layer_causal_run(tiny, records, tmp_path, f"linf:{bound}")
        assert log["layer_grad_linf"][0][0] == pytest.approx(bottom, rel=1e-5)  # the first step is shared
        flags = [x for row in log["clip_acted"] for x in row]
        assert flags == [x > bound for row in log["layer_grad_linf"] for x in row]
        assert log["clip_acted_fraction"] == sum(flags) / 4
        assert flags[0] == (bottom > bound) and (expected is None or all(flags))
        for step, (before, after, entry) in enumerate(zip(states, states[1:], log["losses"], strict=False)):
            for number, acted in enumerate(log["clip_acted"][step]):
                prefix = f"model.layers.{number}."
                moved = max((after[n] - before[n]).abs().max().item() for n in before if n.startswith(prefix))
                limit = entry["learning_rate"] * bound
                assert moved <= limit * 1.001 and (not acted or moved > limit * 0.999)
        assert all(
            n.rsplit(".", 2)[-2] in spec.key_value
            for n in states[0]
            if not torch.equal(states[0][n], states[-1][n])
        )
    assert not torch.equal(states[1]["model.layers.0.self_attn.k_proj.weight"],
                           free_states[1]["model.layers.0.self_attn.k_proj.weight"])  # fmt: skip


def test_causal_lm_with_an_linf_clip_clips_all_layers_at_once(tiny, records, tmp_path):
    reference, spec = tiny
    config = TrainConfig(
        adapt="key-value", clip="linf:1e-4", optim="sgd", learning_rate=1.0, max_steps=1,
        save_steps=100, precision="fp32",
    )  # fmt: skip
    output = train(reference, spec, records, config, tmp_path / "out", tmp_path / "checkpoints")
    log = json.loads((output / "train_log.json").read_text())
    assert max(log["layer_grad_linf"][0]) > 1e-4 and log["clip_acted"] == [[True, True]]


def test_layer_causal_refuses_gradient_accumulation(tiny, records, tmp_path):
    config = TrainConfig(objective="layer-causal", grad_accum=2)
    with pytest.raises(UsageError, match=r"^objective=layer-causal steps on every batch; set grad_accum=1"):
        train(*tiny, records, config, tmp_path / "out", tmp_path / "checkpoints")


@pytest.mark.parametrize("clip", ["none", "l2:0.01"])
def test_clip_none_leaves_the_step_unclipped_and_l2_bounds_it(tiny, records, tmp_path, clip):
    """One plain SGD step at lr 1 moves the trained weights by exactly the gradient: its full L2 norm
    without clipping, at most the bound with `l2:V`."""
    reference, spec = tiny
    config = TrainConfig(
        adapt="key-value", optim="sgd", clip=clip, learning_rate=1.0, max_steps=1, save_steps=100,
        snapshot_steps=1, precision="fp32", warmup_ratio=0.0,
    )  # fmt: skip
    output = train(reference, spec, records, config, tmp_path / "out", tmp_path / "checkpoints")
    log = json.loads((output / "train_log.json").read_text())
    entry = log["losses"][0]
    before = load_file(Path(reference) / "model.safetensors")
    after = load_file(output / "snapshots" / "step-1" / "model.safetensors")
    moved = math.sqrt(sum(float(((after[n] - before[n]) ** 2).sum()) for n in before))
    expected = entry["learning_rate"] * (entry["grad_norm"] if clip == "none" else 0.01)
    assert entry["grad_norm"] > 0.01 and moved == pytest.approx(expected, rel=1e-3)
    assert log["clip_acted"] == [[clip != "none"] * 2]
