"""The probe stage: IWL / ICL / copy scores on the real probe contexts of synthetic-alignment, with model
stand-ins whose answers are known; P1-P3 verdicts; training snapshots; bad input; one real run on `tiny`."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import TINY_SMOKE, WordsTask, build_words_task, error_line, run_cli, tiny_plan
from safetensors.torch import load_file

from icl_bench import cli, hookimpl
from icl_bench.analyses import probes
from icl_bench.contexts.build import ContextConfig, build_contexts, load_pool, read_test_records
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.store import Store
from icl_bench.sweep.plan import SIZES, Size
from icl_bench.sweep.sweep import Sweep
from icl_bench.train.config import TrainConfig
from icl_bench.train.snapshots import SNAPSHOTS, load_trained, snapshots
from icl_bench.train.trainer import train

CONFIG = ContextConfig(max_pool=24, max_test=6)  # the smoke contexts
N = 20


@pytest.fixture(scope="module")
def task():
    return plugins.tasks["synthetic-alignment"]


@pytest.fixture(scope="module")
def items(task):
    return probes.probe_items(task, load_pool(task, CONFIG), CONFIG, N)


# --- stand-ins: (task, item, prompt name) -> prediction -------------------------------------------------


def gold(task, item, name):
    """Ignores the context: always the target's gold output (pure in-weights learning)."""
    return item.target.output


def nearest(task, item, name):
    """Copies the label of the context input most similar to x (pure ICL); gold with no context."""
    context = item.contexts[name]
    if not context:
        return item.target.output
    vectors = task.embed([item.target.input, *(ex.input for ex in context)])
    return context[int(np.argmax(vectors[1:] @ vectors[0]))].output


def mixture(task, item, name):
    """Copies a context label only when its input is as similar as the paraphrase, else gold (ICL-IWL)."""
    context = item.contexts[name]
    vectors = task.embed([item.target.input, *(ex.input for ex in context)])
    sims = vectors[1:] @ vectors[0] if context else np.zeros(0)
    if len(sims) and sims.max() > 0.99:
        return context[int(np.argmax(sims))].output
    return item.target.output


def blind(task, item, name):
    """Copies the label at a random context position, whatever its input (blind copying).  In C deranged
    2 of its k = 4 positions hold a label the copy probe counts (not x~'s and not y~'s; synthetic-alignment
    labels are distinct), so its expected copy score is about 1/2."""
    context = item.contexts[name]
    if not context:
        return "aaaa bbbb cccc"
    return random.Random(f"{item.target.id}|{name}").choice(context).output


def predictions(task, items, model):
    return {name: [model(task, item, name) for item in items] for name in probes.PROMPTS}


def means(task, items, model):
    """Each probe's mean over the examples where it is defined."""
    values = probes.score(task, items, predictions(task, items, model))
    return {p: float(np.mean([x for x in v if x is not None])) for p, v in values.items()}


def test_a_model_that_ignores_the_context_is_pure_iwl(task, items):
    values = probes.score(task, items, predictions(task, items, gold))
    assert values["iwl"] == [1.0] * N
    found = means(task, items, gold)
    assert found["icl"] < 0.25 and found["copy"] < 0.1, found


def test_a_model_that_copies_the_nearest_label_is_icl_not_copy(task, items):
    found, ignoring = means(task, items, nearest), means(task, items, gold)
    assert found["icl"] > 0.4 and found["icl"] > ignoring["icl"] + 0.25, (found, ignoring)
    assert found["copy"] < 0.25, found


def test_a_model_that_copies_a_random_label_is_a_blind_copier(task, items):
    found = means(task, items, blind)
    others = [means(task, items, m)["copy"] for m in (gold, nearest, mixture)]
    assert found["copy"] > 0.4 and found["copy"] > max(others) + 0.3, (found, others)
    assert found["iwl"] < 0.3, found


def test_icl_weights_and_derangements():
    assert probes.icl_weights([1.0, 0.5, -0.5, 0.5]) == (0.5, 0.25, 0.0, 0.25)
    assert probes.icl_weights([-0.2, 0.0]) == (0.5, 0.5)
    for n in range(2, 7):
        for seed in range(50):
            order = probes.derangement(n, random.Random(seed))
            assert sorted(order) == list(range(n)) and all(i != j for i, j in enumerate(order))
    with pytest.raises(UsageError, match="raise --k"):
        probes.derangement(1, random.Random(0))


def test_probe_contexts_reuse_the_test_modes_and_derange_every_label(task, items, tmp_path):
    built = build_contexts(task, [], CONFIG, Store(tmp_path / "store"))
    records = {(r["mode"], r["id"]): r for r in read_test_records(built.test, task)}
    for item in items[: CONFIG.max_test]:
        for name in ("random", "paraphrase"):
            assert [ex.id for ex in item.contexts[name]] == records[(name, item.target.id)]["context_ids"]
        assert item.near == records[("paraphrase", item.target.id)]["near"]
        para, deranged = item.contexts["paraphrase"], item.contexts["deranged"]
        assert para[item.near].meta["paraphrase_of"] == item.target.id
        assert [ex.input for ex in deranged] == [ex.input for ex in para]
        assert sorted(ex.output for ex in deranged) == sorted(ex.output for ex in para)
        assert all(d.output != p.output for d, p in zip(deranged, para, strict=True))  # no fixed point
        assert item.contexts["empty"] == () and abs(sum(item.weights) - 1) < 1e-9
        assert item.weights[item.near] == max(item.weights)  # x~ shuffles x: sim_x = 1
        assert item.prompts["empty"] == task.prompt((), item.target)


def test_probe_contexts_are_a_deterministic_store_artifact(task, tmp_path):
    a = probes.build_probe_contexts(task, CONFIG, Store(tmp_path / "a"), 5)
    b = probes.build_probe_contexts(task, CONFIG, Store(tmp_path / "b"), 5)
    assert a.name == b.name and (a / "probes.jsonl").read_bytes() == (b / "probes.jsonl").read_bytes()
    other = probes.build_probe_contexts(task, replace(CONFIG, seed=1), Store(tmp_path / "a"), 5)
    assert other != a and len(probes.read_items(a)) == 5


def stand_in_report(task, items):
    """Known models at known states: the base and contrastive mix ICL and IWL, random is pure IWL,
    similar copies blindly."""
    states = [probes.State("base", 0)]
    models = {"base@0": mixture}
    for regime, model in (("random", gold), ("similar", blind), ("contrastive", mixture)):
        for step in (2, 4):
            states.append(probes.State(regime, step))
            models[f"{regime}@{step}"] = model
    values = {name: probes.score(task, items, predictions(task, items, m)) for name, m in models.items()}
    ids = tuple(item.target.id for item in items)
    probed = probes.Probed(task.name, "stand-ins", "test", 4, ids, tuple(states), values)
    return probes.report(probed)


def test_claims_p1_to_p3_hold_for_the_known_models(task, items, tmp_path):
    report = stand_in_report(task, items)
    verdicts = {v.claim.id: v for v in report.verdicts.claims}
    assert list(verdicts) == ["P1", "P2", "P3"]
    assert {claim: v.verdict for claim, v in verdicts.items()} == dict.fromkeys(verdicts, "holds")
    texts = [o.comparison.text for v in verdicts.values() for o in v.outcomes]
    assert "IWL: similar@4 < random@4" in texts and "ICL: contrastive@4 >= base@0" in texts
    files = probes.render([report])
    assert files == probes.render([stand_in_report(task, items)])  # deterministic bytes, PNG included
    assert files["probes.png"].startswith(b"\x89PNG") and b"Matplotlib" not in files["probes.png"]
    text = files["probes.md"].decode()
    assert "| **P1** |" in text and "| contrastive | 4 |" in text and "| base | 0 |" in text
    data = json.loads(files["probes.json"])
    (entry,) = data["probes"]
    assert [c["id"] for c in entry["claims"]] == ["P1", "P2", "P3"]
    assert entry["values"]["random@4"]["iwl"] == [1.0] * N


def test_a_regime_that_did_not_run_is_not_run(task, items):
    report = stand_in_report(task, items)
    probed = report.probed
    kept = tuple(s for s in probed.states if s.regime != "similar")
    values = {s.name: probed.values[s.name] for s in kept}
    verdicts = probes.report(replace(probed, states=kept, values=values)).verdicts.claims
    assert [v.verdict for v in verdicts] == ["not run", "holds", "not run"]


# --- snapshots ---------------------------------------------------------------------------------------


def test_snapshots_keep_the_adapter_and_change_no_weight(tmp_path):
    from icl_bench.models import materialize, resolve

    spec = resolve("tiny")
    reference = materialize(spec, Store(tmp_path / "store"))
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefgh") for _ in range(4)) for _ in range(16)]
    records = [{"prompt": f"Reverse: {w}\nOutput:", "completion": " " + w[::-1]} for w in words]
    config = TrainConfig(learning_rate=1e-2, max_steps=4, save_steps=2)
    plain = train(reference, spec, records, config, tmp_path / "plain", tmp_path / "plain-checkpoints")
    kept = train(
        reference,
        spec,
        records,
        replace(config, snapshot_steps=3),
        tmp_path / "kept",
        tmp_path / "kept-checkpoints",
    )
    assert not (plain / SNAPSHOTS).exists() and snapshots(plain) == []
    assert [(step, path.name) for step, path in snapshots(kept)] == [(3, "step-3"), (4, "step-4")]
    for _, folder in snapshots(kept):
        assert sorted(p.name for p in folder.iterdir()) == [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors",
        ]
    final, last = (
        load_file(plain / "adapter_model.safetensors"),
        load_file(kept / "adapter_model.safetensors"),
    )
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    at_4 = load_file(kept / SNAPSHOTS / "step-4" / "adapter_model.safetensors")
    at_3 = load_file(kept / SNAPSHOTS / "step-3" / "adapter_model.safetensors")
    assert all(torch.equal(at_4[k], final[k]) for k in final)
    assert not all(torch.equal(at_3[k], final[k]) for k in final)
    loaded, _ = load_trained(reference, kept / SNAPSHOTS / "step-3")
    assert loaded is not None
    log = json.loads((kept / "train_log.json").read_text())
    assert log["config"]["snapshot_steps"] == 3
    assert TrainConfig(snapshot_steps=3).key()["snapshot_steps"] == 3
    with pytest.raises(UsageError, match="snapshot_steps must be 0"):
        TrainConfig(snapshot_steps=-1)
    with pytest.raises(UsageError, match="not supported under ZeRO-3"):
        train(
            reference,
            spec,
            records,
            replace(config, snapshot_steps=2, zero_stage=3),
            tmp_path / "z",
            tmp_path / "zc",
            deepspeed=True,
        )


def test_size_presets_keep_about_five_snapshots():
    assert SIZES["smoke"].train.snapshot_steps == 2 and SIZES["smoke"].train.max_steps == 4
    default = SIZES["default"]
    steps = default.contexts.max_pool * default.contexts.epochs // default.train.batch_size
    assert steps // default.train.snapshot_steps == 5


# --- bad input ---------------------------------------------------------------------------------------


def test_an_unknown_regime_is_one_line(tmp_path):
    done = run_cli("probe", *TINY_SMOKE, "--regimes", "nope", cwd=tmp_path)
    assert "unknown regime 'nope'; known regimes: " in error_line(done)


def test_an_untrained_regime_is_one_line(tmp_path):
    done = run_cli("probe", *TINY_SMOKE, "--regimes", "zero", cwd=tmp_path)
    line = error_line(done)
    assert "not trained yet: tiny / synthetic-alignment / zero" in line and "icl-bench train" in line


class _NoParaphrase:
    @hookimpl
    def register_tasks(self, register):
        built = build_words_task("no-paraphrase", n_train=60, n_test=5)
        register(WordsTask("no-paraphrase", built.load("train"), built.load("test"), None))


def test_a_task_without_a_paraphraser_is_one_line(tmp_path, capsys):
    plugins.pm.register(_NoParaphrase(), name="tests-no-paraphrase")
    plugins.refresh()
    try:
        args = [
            "probe",
            "--tasks",
            "no-paraphrase",
            "--models",
            "tiny",
            "--regimes",
            "zero",
            "--size",
            "smoke",
        ]
        code = cli.main([*args, "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out")])
    finally:
        plugins.pm.unregister(name="tests-no-paraphrase")
        plugins.refresh()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not (tmp_path / "store" / "models").exists()  # before any work
    assert "task 'no-paraphrase' has no paraphraser: the ICL and copy probes need one" in line


def test_a_regime_trained_without_snapshots_is_one_line(tmp_path, monkeypatch, capsys):
    smoke = SIZES["smoke"]
    monkeypatch.setitem(SIZES, "bare", Size(smoke.contexts, replace(smoke.train, snapshot_steps=0), 6))
    store = Store(tmp_path / "store")
    plan = tiny_plan(["zero"], tmp_path / "out", size="bare")
    sweep = Sweep(plan, store)
    settings = [setting for setting, _ in sweep.settings(base=False)]
    with store.writing("train", sweep.train_inputs(settings[0])) as fake:  # an adapter, no snapshots
        (fake / "adapter_config.json").write_text("{}")
    capsys.readouterr()  # the tiny model's build, above
    args = ["probe", "--models", "tiny", "--tasks", "synthetic-alignment", "--regimes", "zero"]
    args += ["--size", "bare", "--store", str(store.root)]
    assert cli.main([*args, "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "trained without snapshots: tiny / synthetic-alignment / zero" in line
    assert "retrain with snapshot_steps > 0" in line and "icl-bench train" in line


# --- end to end ------------------------------------------------------------------------------------


def test_run_with_probes_on_tiny(tmp_path):
    """The real stage end to end: the three regimes P1-P3 name, 3 probe examples (time), 2 snapshots each."""
    out, store = tmp_path / "suite", tmp_path / "store"
    done = run_cli(
        "run", "--probes", *TINY_SMOKE, "--regimes", "random,similar,contrastive", "--max-probe", "3",
        "--store", str(store), "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert all((out / name).is_file() for name in probes.FILES)
    text = (out / "probes.md").read_text()
    assert all(f"| **{claim}** |" in text for claim in ("P1", "P2", "P3"))
    assert "| similar | 4 |" in text and "![probes over training](probes.png)" in text
    (entry,) = json.loads((out / "probes.json").read_text())["probes"]
    assert {(r["regime"], r["step"]) for r in entry["rows"]} == {("base", 0)} | {
        (regime, step) for regime in ("random", "similar", "contrastive") for step in (2, 4)
    }
    assert len(entry["ids"]) == 3 and all(len(v["copy"]) == 3 for v in entry["values"].values())
    assert entry["copy"] == {"defined": True, "undefined": 0, "examples": 3}  # 4 distinct labels in C
    assert all(c["verdict"] != "not run" for c in entry["claims"])
    assert "P2" in done.stdout and "probes: synthetic-alignment, tiny" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert len(list((store / "probe-predictions").iterdir())) == 7  # base + 3 regimes x 2 snapshots
    assert cli.main(["leaderboard", "--out", str(out), "--check"]) == 0  # probes.png is not stale
