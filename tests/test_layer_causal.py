"""Layer-causal fine-tuning (SPEC 6) on the `tiny` model: the logit lens reproduces the model's logits, the
loss is the sum of every layer's exit loss, a layer's gradient does not depend on the layers above it (as it
does under the causal-LM loss), and a training run records per-layer gradient norms and respects an
l-infinity gradient clip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import reverse_records
from safetensors.torch import load_file

from icl_bench.errors import UsageError
from icl_bench.models import decoder_layers, load, logit_lens
from icl_bench.train import IGNORE, Collator, TrainConfig, causal_lm_loss, encode, layer_causal_loss, train


@pytest.fixture(scope="module")
def records():
    return reverse_records(8, seed=1)


@pytest.fixture()
def model_and_batch(tiny, records):
    model, tokenizer = load(tiny[0], "fp32")
    batch = Collator(tokenizer.pad_token_id)(encode(records[:3], tokenizer, 64))
    return model, {key: value.to(model.device) for key, value in batch.items()}


def layer_outputs(model, batch) -> list[torch.Tensor]:
    """Every decoder layer's output on `batch` (no detaching), bottom to top."""
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


def test_loss_is_the_sum_of_the_layer_exits(model_and_batch):
    model, batch = model_and_batch
    lens, labels = logit_lens(model), batch["labels"][:, 1:]
    kept = labels != IGNORE
    with torch.no_grad():
        exits = [F.cross_entropy(lens(h[:, :-1][kept]), labels[kept]) for h in layer_outputs(model, batch)]
        assert layer_causal_loss(model, batch).item() == pytest.approx(sum(exits).item(), rel=1e-5)
        assert exits[-1].item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)  # the top exit


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


def layer_gradient(model, loss, layer) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [param.grad.clone() for param in layer.parameters()]


@pytest.mark.parametrize("objective", ["layer-causal", "causal-lm"])
def test_a_layer_learns_only_from_its_own_exit(model_and_batch, objective):
    model, batch = model_and_batch
    bottom, top = decoder_layers(model)

    def loss():
        return layer_causal_loss(model, batch) if objective == "layer-causal" else model(**batch).loss

    before = layer_gradient(model, loss(), bottom)
    assert all(grad.abs().sum() > 0 for grad in before)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # perturb only the layer above
        for param in top.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    after = layer_gradient(model, loss(), bottom)
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(before, after, strict=True))
    assert same is (objective == "layer-causal")


def test_layer_causal_training_with_an_linf_clip(tiny, records, tmp_path):
    reference, spec = tiny
    bound, steps = 1e-3, 3
    config = TrainConfig(
        adapt="key-value",
        objective="layer-causal",
        clip=f"linf:{bound}",
        optim="sgd",
        learning_rate=1.0,
        max_steps=steps,
        save_steps=100,
        snapshot_steps=1,
        precision="fp32",
    )
    output = train(reference, spec, records, config, tmp_path / "out", tmp_path / "checkpoints")
    log = json.loads((output / "train_log.json").read_text())

    norms = log["layer_grad_norms"]
    assert len(norms) == steps and all(len(row) == 2 for row in norms)
    assert all(math.isfinite(x) and x >= 0 for row in norms for x in row) and any(
        x > 0 for r in norms for x in r
    )
    # recorded before clipping: they make up the Trainer's own (pre-clip) norm, only layers train here
    for row, entry in zip(norms, log["losses"], strict=True):
        assert math.hypot(*row) == pytest.approx(entry["grad_norm"], rel=1e-4)
        assert entry["grad_norm"] > bound

    # plain SGD: each step moves every weight by lr * its clipped gradient, so by at most lr * bound,
    # and by exactly that wherever the clip binds
    states = [load_file(Path(reference) / "model.safetensors")]
    states += [
        load_file(output / "snapshots" / f"step-{n}" / "model.safetensors") for n in range(1, steps + 1)
    ]
    for before, after, entry in zip(states[:-1], states[1:], log["losses"], strict=True):
        step = entry["learning_rate"] * bound
        moved = {name: (after[name] - before[name]).abs() for name in before}
        assert all(name.rsplit(".", 2)[-2] in spec.key_value for name, d in moved.items() if d.max() > 0)
        largest = max(d.max().item() for d in moved.values())
        assert step * 0.999 < largest <= step * 1.001 + 1e-8


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
    entry = json.loads((output / "train_log.json").read_text())["losses"][0]
    before = load_file(Path(reference) / "model.safetensors")
    after = load_file(output / "snapshots" / "step-1" / "model.safetensors")
    moved = math.sqrt(sum(float(((after[n] - before[n]) ** 2).sum()) for n in before))
    expected = entry["learning_rate"] * (entry["grad_norm"] if clip == "none" else 0.01)
    assert entry["grad_norm"] > 0.01 and moved == pytest.approx(expected, rel=1e-3)
