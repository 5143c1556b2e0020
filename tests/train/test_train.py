"""The train stage on the `tiny` model: LoRA learns and touches only the adapter (key-value training only
the keys and values), labels cover the completion only, an interrupted run resumes, a NaN loss stops the
run, config keys stay stable, and DeepSpeed ZeRO-2 trains on CPU in one and in two processes (the last two
are marked `deepspeed`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
from helpers import reverse_records
from safetensors.torch import load_file

from icl_bench.core import numerics
from icl_bench.core.errors import UsageError
from icl_bench.models import load, resolve_precision
from icl_bench.train.config import TrainConfig, TrainingDiverged
from icl_bench.train.data import IGNORE, Collator, encode
from icl_bench.train.deepspeed_env import zero_config
from icl_bench.train.launch import launch_command, main, run_job, write_job
from icl_bench.train.snapshots import load_trained
from icl_bench.train.trainer import train

FAST = {"learning_rate": 1e-2, "max_steps": 4, "save_steps": 2}


@pytest.fixture(scope="module")
def records():
    return reverse_records(16, seed=0)


@pytest.fixture(scope="module")
def reference_run(tiny, records, tmp_path_factory):
    """One uninterrupted 4-step LoRA run (checkpoints at steps 2 and 4)."""
    folder = tmp_path_factory.mktemp("reference")
    train(*tiny, records, TrainConfig(**FAST), folder / "out", folder / "checkpoints")
    return folder


def read_log(output) -> dict:
    return json.loads((output / "train_log.json").read_text())


def completion_loss(model, tokenizer, records) -> float:
    batch = Collator(tokenizer.pad_token_id)(encode(records, tokenizer, 1024))
    batch = {key: value.to(model.device) for key, value in batch.items()}
    with torch.no_grad():
        return model(**batch).loss.item()


def test_lora_learns_and_changes_only_the_adapted_weights(tiny, records, tmp_path):
    reference, spec = tiny
    config = TrainConfig(learning_rate=2e-2, epochs=2, save_steps=100)
    output = train(reference, spec, records, config, tmp_path / "out", tmp_path / "checkpoints")

    log = read_log(output)
    assert log["steps"] == len(log["losses"]) == 16 and log["resumed_from"] is None
    norms = log["layer_grad_norms"]  # every layer holds adapted weights, so every norm is positive
    assert len(norms) == 16 and all(len(row) == 2 and min(row) > 0 for row in norms)
    tensors = load_file(output / "adapter_model.safetensors")
    assert tensors and all(".lora_A." in name or ".lora_B." in name for name in tensors)
    assert {name.split(".lora_")[0].rsplit(".", 1)[1] for name in tensors} == set(spec.lora_targets)
    assert json.loads((output / "adapter_config.json").read_text())["r"] == config.lora_rank

    base, tokenizer = load(reference)
    trained, _ = load_trained(reference, output)
    before, after = completion_loss(base, tokenizer, records), completion_loss(trained, tokenizer, records)
    assert after < before - 0.1, (before, after)
    changed = {
        name
        for name, weight in trained.state_dict().items()
        if not torch.equal(weight, base.state_dict()[name])
    }
    assert changed and all(name.rsplit(".", 2)[-2] in spec.lora_targets for name in changed)


def test_labels_cover_the_completion_only(tiny, records):
    _, tokenizer = load(tiny[0])
    chosen = [*records[:2], {"prompt": "a much longer prompt here:", "completion": " xy"}]
    features = encode(chosen, tokenizer, 64)
    batch = Collator(tokenizer.pad_token_id)(features)
    for row, (feature, record) in enumerate(zip(features, chosen, strict=True)):
        labels, ids, mask = batch["labels"][row], batch["input_ids"][row], batch["attention_mask"][row]
        kept = labels != IGNORE
        assert tokenizer.decode(labels[kept]) == record["completion"] + tokenizer.eos_token
        assert torch.equal(ids[kept], labels[kept])
        first = int(kept.nonzero()[0])  # every label after the prompt, none before it, none on padding
        assert kept[first : len(feature["input_ids"])].all() and not kept[:first].any()
        assert int(mask.sum()) == len(feature["input_ids"]) and not kept[mask == 0].any()
        assert (ids[mask == 0] == tokenizer.pad_token_id).all()

    long = {"prompt": "x" * 50 + "TAIL:", "completion": " done"}
    (cut,) = encode([long], tokenizer, 16)
    assert len(cut["input_ids"]) == 16
    assert tokenizer.decode(cut["input_ids"]) == "xxxxxTAIL: done" + tokenizer.eos_token  # cut on the left
    with pytest.raises(UsageError, match="max_length=4"):
        encode([long], tokenizer, 4)


def test_resumes_from_the_last_checkpoint(tiny, records, reference_run, tmp_path):
    done = reference_run / "out"
    assert sorted(p.name for p in (reference_run / "checkpoints").iterdir()) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    # Interrupted after step 2: only checkpoint-2 made it to disk and no output was written.
    shutil.copytree(reference_run / "checkpoints" / "checkpoint-2", tmp_path / "checkpoints" / "checkpoint-2")
    resumed = train(*tiny, records, TrainConfig(**FAST), tmp_path / "out", tmp_path / "checkpoints")
    log, full = read_log(resumed), read_log(done)
    assert log["resumed_from"] == 2 and log["steps"] == 4
    assert [entry["step"] for entry in log["losses"]] == [1, 2, 3, 4]
    assert [e["loss"] for e in log["losses"]] == pytest.approx([e["loss"] for e in full["losses"]], rel=1e-5)
    expected, got = (
        load_file(done / "adapter_model.safetensors"),
        load_file(resumed / "adapter_model.safetensors"),
    )
    assert all(torch.allclose(got[name], expected[name], atol=1e-6) for name in expected)

    # Output lost after the last checkpoint: the rerun trains nothing and rewrites the same adapter.
    again = train(*tiny, records, TrainConfig(**FAST), tmp_path / "again", reference_run / "checkpoints")
    assert read_log(again)["resumed_from"] == 4
    redone = load_file(again / "adapter_model.safetensors")
    assert all(torch.equal(redone[name], expected[name]) for name in expected)


def test_nan_loss_raises_training_diverged(tiny, records, tmp_path):
    config = TrainConfig(learning_rate=1e30, max_steps=6, save_steps=2)
    with pytest.raises(
        TrainingDiverged, match=r"diverged at step \d+: loss is nan; lower the learning rate"
    ) as err:
        train(*tiny, records, config, tmp_path / "out", tmp_path / "checkpoints")
    assert "\n" not in str(err.value)
    step = int(str(err.value).split("step ")[1].split(":")[0])
    assert not (tmp_path / "checkpoints" / f"checkpoint-{step}").exists()  # the NaN state is never saved
    assert not (tmp_path / "out").exists()


def test_config_validation_and_key():
    with pytest.raises(UsageError, match="adapt must be one of attention, attention\\+mlp, full, key-value"):
        TrainConfig(adapt="everything")
    for field, value in [("lora_rank", 0), ("learning_rate", -1.0), ("max_steps", 0), ("zero_stage", 4)]:
        with pytest.raises(UsageError, match=f"train config: {field} must be"):
            TrainConfig(**{field: value})
    allowed = {
        "objective": "one of causal-lm, layer-causal",
        "clip": "l2:V, linf:V (V a positive number) or none",
        "optim": "one of adamw_torch, sgd",
    }
    bad = [("objective", "layer"), ("clip", "linf:x"), ("clip", "l3:1"), ("clip", "l2:0"), ("optim", "adam")]
    for field, value in bad:
        with pytest.raises(UsageError) as error:
            TrainConfig(**{field: value})
        assert str(error.value) == f"train config: {field} must be {allowed[field]}, got {value!r}"
    key = TrainConfig().key()
    assert key["lora_rank"] == 16 and key["adapt"] == "attention" and "save_steps" not in key
    assert "lora_rank" not in TrainConfig(adapt="full").key()
    assert "lora_rank" not in TrainConfig(adapt="key-value").key()
    assert "group_by_length" not in key and TrainConfig(group_by_length=True).key()["group_by_length"]
    with pytest.raises(UsageError, match="group_by_length must be true or false, got 'yes'"):
        TrainConfig(group_by_length="yes")


def test_length_grouped_batches_cut_the_padding_waste(tiny, tmp_path):
    varied = [{"prompt": "x" * n + ":", "completion": " ab"} for n in range(1, 33)]
    waste = {}
    for grouped in (False, True):
        out = tmp_path / f"grouped-{grouped}"
        train(*tiny, varied, TrainConfig(**FAST, group_by_length=grouped), out, tmp_path / f"ck-{grouped}")
        padding = read_log(out)["padding"]
        computed = padding["tokens"] + padding["padding"]
        assert computed >= 8 * 5 and padding["waste"] == round(padding["padding"] / computed, 4)
        waste[grouped] = padding["waste"]
    assert waste[True] < waste[False]  # neighbours in length share a batch (seeded: 8.5% vs 17.4%)


def test_the_collator_counts_tokens_and_padding():
    collator = Collator(pad_id=0)
    collator([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [5], "labels": [5]}])
    assert (collator.tokens, collator.padding) == (4, 2)


def test_keys_of_existing_configs_are_unchanged():
    """Committed leaderboards and users' stores are keyed by TrainConfig.key(): new fields join the key
    only when set away from their defaults; only TRAINER_VERSION and the numerics profile (the CPU
    kernels that round the weights) move every key."""
    key = TrainConfig(precision="fp32").key()
    assert json.dumps(key) == json.dumps(
        {
            "lora_rank": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "adapt": "attention",
            "learning_rate": 0.0002,
            "epochs": 1,
            "batch_size": 2,
            "grad_accum": 1,
            "max_steps": -1,
            "warmup_ratio": 0.0,
            "weight_decay": 0.0,
            "max_length": 1024,
            "seed": 0,
            "snapshot_steps": 0,
            "precision": "fp32",
            "trainer": 2,
            "numerics": numerics.key(),
        }
    )
    assert TrainConfig().key() == key | {"precision": resolve_precision("auto")}
    changed = TrainConfig(precision="fp32", objective="layer-causal", clip="linf:12.0", optim="sgd").key()
    assert changed == key | {"objective": "layer-causal", "clip": "linf:12.0", "optim": "sgd"}


def test_key_value_trains_only_the_keys_and_values(tiny, records, tmp_path):
    reference, spec = tiny
    config = TrainConfig(adapt="key-value", learning_rate=1e-2, max_steps=2, save_steps=100)
    output = train(reference, spec, records, config, tmp_path / "out", tmp_path / "checkpoints")
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()
    base, _ = load(reference)
    trained, _ = load_trained(reference, output)
    changed = {
        name
        for name, weight in trained.state_dict().items()
        if not torch.equal(weight, base.state_dict()[name])
    }
    layers = base.config.num_hidden_layers
    assert changed == {
        f"model.layers.{n}.self_attn.{m}.weight" for n in range(layers) for m in spec.key_value
    }


def test_zero_config_shapes():
    default = zero_config(TrainConfig())
    assert default["zero_optimization"]["stage"] == 2 and "optimizer" not in default
    assert "offload_optimizer" not in default["zero_optimization"]
    for name in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert default[name] == "auto"
    assert default["bf16"] == default["fp16"] == {"enabled": "auto"}

    big = zero_config(TrainConfig(adapt="full", zero_stage=3, offload=True))
    zero = big["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "cpu"
    assert big["optimizer"]["type"] == "AdamW"
    assert "offload_param" not in zero_config(TrainConfig(offload=True))["zero_optimization"]


def test_launch_commands(tmp_path):
    job = tmp_path / "job.json"
    command = launch_command(job, num_gpus=2, master_port=29511)
    assert os.path.basename(command[0]) == "deepspeed"
    tail = ["icl_bench.train.launch", "--job", str(job)]
    assert command[1:] == ["--num_gpus", "2", "--master_port", "29511", "--module", *tail]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("worker-0 slots=8\nworker-1 slots=8\n")
    assert launch_command(job, num_gpus=None, hostfile=hostfile)[1:3] == ["--hostfile", str(hostfile)]
    torchrun = launch_command(job, num_gpus=2, launcher="torchrun")
    assert torchrun[1:] == ["--standalone", "--nproc_per_node", "2", "-m", *tail]
    with pytest.raises(UsageError, match="unknown launcher"):
        launch_command(job, num_gpus=2, launcher="mpirun")
    with pytest.raises(UsageError, match="hostfile"):
        launch_command(job, num_gpus=2, hostfile=hostfile, launcher="torchrun")


def test_a_failed_job_is_one_line(tiny, records, tmp_path, monkeypatch, capsys):
    job = write_job(
        tmp_path,
        reference=tiny[0],
        model="no-such-model",
        records=records,
        config=TrainConfig(),
        output=tmp_path / "out",
        checkpoints=tmp_path / "checkpoints",
    )
    assert main(["--job", str(job)]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err

    def launcher(command, **kwargs):  # the workers write the error file; run_job reports it
        assert command[-2:] == ["--job", str(job)]
        return subprocess.CompletedProcess(command, main(command[-2:]))

    monkeypatch.setattr("icl_bench.train.launch.subprocess.run", launcher)
    with pytest.raises(UsageError, match=r"^unknown model 'no-such-model'"):
        run_job(job, num_gpus=2)


@pytest.mark.deepspeed
def test_deepspeed_zero2_one_process(tiny, records, reference_run, tmp_path):
    job = write_job(
        tmp_path,
        reference=tiny[0],
        model="tiny",
        records=records,
        config=TrainConfig(**FAST),
        output=tmp_path / "out",
        checkpoints=tmp_path / "checkpoints",
    )
    assert main(["--job", str(job)]) == 0  # deepspeed=True, no launcher: a one-process gloo group
    log = read_log(tmp_path / "out")
    assert log["deepspeed"]["zero_optimization"]["stage"] == 2 and log["world_size"] == 1
    assert "layer_grad_norms" not in log  # the engine keeps the gradients to itself
    plain = [e["loss"] for e in read_log(reference_run / "out")["losses"]]
    # the same optimisation (in bf16 DeepSpeed keeps the LoRA weights in bf16, the Trainer in fp32)
    assert [e["loss"] for e in log["losses"]] == pytest.approx(
        plain, rel=1e-2 if resolve_precision() == "bf16" else 1e-4
    )
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert not {"RANK", "LOCAL_RANK", "ACCELERATE_USE_DEEPSPEED"} & set(os.environ)  # environment restored


@pytest.mark.deepspeed
@pytest.mark.skipif(0 < torch.cuda.device_count() < 2, reason="two processes need two GPUs when CUDA is on")
def test_deepspeed_zero2_two_processes(tiny, records, tmp_path):
    config = TrainConfig(learning_rate=1e-2, max_steps=2, save_steps=2, batch_size=1)
    job = write_job(
        tmp_path,
        reference=tiny[0],
        model="tiny",
        records=records,
        config=config,
        output=tmp_path / "out",
        checkpoints=tmp_path / "checkpoints",
    )
    output = run_job(job, num_gpus=2, env={"OMP_NUM_THREADS": "1"})
    log = read_log(output)
    assert log["world_size"] == 2 and log["steps"] == 2 and len(log["losses"]) == 2
    trained, tokenizer = load_trained(tiny[0], output)
    base, _ = load(tiny[0])
    assert completion_loss(trained, tokenizer, records) != completion_loss(base, tokenizer, records)
