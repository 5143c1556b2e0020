"""The evaluate stage on the real `tiny` model through lm-eval, checked against plain `model.generate`."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from helpers import WordsTask, build_words_task

from icl_bench.contexts import build as contexts
from icl_bench.contexts.build import ContextConfig, load_pool
from icl_bench.contexts.modes import MODES
from icl_bench.contexts.pool import Pool
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.store import Store
from icl_bench.evaluate.export import export_lm_eval, task_name
from icl_bench.evaluate.runner import evaluate
from icl_bench.models import load, materialize, resolve

FIELDS = {"task", "model", "regime", "split", "mode", "id", "prediction", "score", "metrics", "max_sim"}


def scramble(model, tokenizer) -> None:
    """Re-draw the weights (seeded) so greedy output depends strongly on the prompt, and boost the rows
    of lowercase letters, space and newline: outputs look like words and often stop at a newline."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        rows = [tokenizer.convert_tokens_to_ids(ch) for ch in "abcdefghijklmnopqrstuvwxyzĠĊ"]
        model.get_input_embeddings().weight[rows] *= 3  # tied: also the output rows


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 64-wide model gains nothing from threads, and on a busy machine OpenMP spin-waits cost 20x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, tokenizer) of `tiny`, materialised into a temporary store, then scrambled in memory."""
    model, tokenizer = load(materialize(resolve("tiny"), Store(tmp_path_factory.mktemp("store"))))
    scramble(model, tokenizer)
    return model, tokenizer


@pytest.fixture(scope="module")
def task():
    """synthetic-alignment with chrF as a further extra metric: nonzero, per-example scores."""
    variant = copy.copy(plugins.tasks["synthetic-alignment"])
    variant.extra_metrics = ("exact-match", "chrf")
    return variant


@pytest.fixture(scope="module")
def records(task):
    config = ContextConfig(max_pool=40, max_test=8)
    pool = load_pool(task, config)
    return [r for mode in MODES.values() for r in contexts.mode_records(task, pool, "test", mode, config)]


@pytest.fixture(scope="module")
def results(tiny, task, records):
    return evaluate(*tiny, task, records, model_name="tiny", regime="base", batch_size=8)


def greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """One prompt, unpadded, through `model.generate`: the raw continuation."""
    encoded = tokenizer(prompt, return_tensors="pt")
    out = model.generate(
        **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, encoded.input_ids.shape[1] :], skip_special_tokens=True)


def test_one_record_per_example_and_mode(results, records, task):
    assert len(results) == len(records) == 4 * 8
    assert {(r["mode"], r["id"]) for r in results} == {(r["mode"], r["id"]) for r in records}
    assert [(r["split"], r["mode"], r["id"]) for r in results] == sorted(
        (r["split"], r["mode"], r["id"]) for r in results
    )
    sims = {(r["mode"], r["id"]): r["max_sim"] for r in records}
    for r in results:
        assert set(r) == FIELDS
        assert (r["task"], r["model"], r["regime"], r["split"]) == (task.name, "tiny", "base", "test")
        assert set(r["metrics"]) == {"pfa-segment-accuracy", "exact-match", "chrf"}
        assert r["score"] == r["metrics"]["pfa-segment-accuracy"]
        assert r["max_sim"] == sims[(r["mode"], r["id"])]
    json.dumps(results)  # plain JSON values


def test_predictions_are_greedy_generate_of_the_verbatim_prompt(tiny, task, records, results):
    """Predictions equal an unbatched greedy `model.generate` of the record's prompt cut at the first stop
    string (checked on every other record): lm-eval added nothing to the prompt and stripped nothing else."""
    prompts = {(r["mode"], r["id"]): r["prompt"] for r in records}
    stopped = 0
    for r in results[::2]:
        raw = greedy(*tiny, prompts[(r["mode"], r["id"])], task.generation.max_new_tokens)
        assert r["prediction"] == raw.split("\n")[0]
        stopped += "\n" in raw
    assert 0 < stopped < len(results) // 2  # both cut and uncut generations are covered
    assert len({r["prediction"] for r in results}) == len(results)  # the output depends on the prompt


def test_scores_are_the_task_metrics(task, results):
    gold = {ex.id: ex for ex in task.load("test")}
    examples = [gold[r["id"]] for r in results]
    predictions = [r["prediction"] for r in results]
    for name in ("pfa-segment-accuracy", "exact-match", "chrf"):
        assert [r["metrics"][name] for r in results] == plugins.metrics[name](predictions, examples)
    assert len({r["metrics"]["chrf"] for r in results}) > 10


def test_deterministic_and_quiet(tiny, task, records, results, capfd):
    capfd.readouterr()
    again = evaluate(*tiny, task, list(reversed(records)), model_name="tiny", regime="base", batch_size=8)
    assert again == results
    assert capfd.readouterr() == ("", "")  # lm-eval's logging, bars and `git describe` are silenced


def test_batches_are_left_padded_and_sorted_by_length(tiny, task, records, monkeypatch):
    """lm-eval's HFLM: generation batches are left-padded and come longest first."""
    from lm_eval.models.huggingface import HFLM

    batches = []
    original = HFLM._model_generate

    def spy(self, context, max_length, stop, **kwargs):
        batches.append(kwargs["attention_mask"].clone())
        return original(self, context, max_length, stop, **kwargs)

    monkeypatch.setattr(HFLM, "_model_generate", spy)
    evaluate(*tiny, task, records, model_name="tiny", regime="base", batch_size=8)
    assert [len(mask) for mask in batches] == [8, 8, 8, 8]
    lengths = [mask.sum(1).tolist() for mask in batches]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat, reverse=True)
    for mask in batches:
        assert torch.equal(mask, mask.sort(dim=1).values)  # zeros (padding) only on the left


class ParityChoice(WordsTask):
    choices = ("even", "odd")


def test_multiple_choice_takes_the_likeliest_choice(tiny):
    model, tokenizer = tiny
    words = build_words_task(n_train=50, n_test=10)
    task = ParityChoice("parity", words.load("train"), words.load("test"), None)
    config = ContextConfig(k=2, max_test=10)
    records = contexts.mode_records(task, Pool(task, task.load("train")), "test", MODES["random"], config)
    results = evaluate(model, tokenizer, task, records, model_name="tiny", regime="base")
    gold = {ex.id: ex.output for ex in task.load("test")}
    prompts = {r["id"]: r["prompt"] for r in records}
    for r in results:
        context = tokenizer(prompts[r["id"]]).input_ids
        scores = []
        for choice in task.choices:
            ids = tokenizer(prompts[r["id"]] + f" {choice}").input_ids
            with torch.no_grad():
                logits = model(torch.tensor([ids], device=model.device)).logits[0].log_softmax(-1)
            scores.append(sum(logits[i - 1, ids[i]].item() for i in range(len(context), len(ids))))
        assert r["prediction"] == task.choices[scores.index(max(scores))]
        assert r["score"] == float(r["prediction"] == gold[r["id"]])


def test_bad_records_are_usage_errors(tiny, task, records):
    with pytest.raises(UsageError, match="appears twice"):
        evaluate(*tiny, task, records + records[:1], model_name="tiny", regime="base")
    long = dict(records[0], prompt=records[0]["prompt"] * 160)
    with pytest.raises(UsageError, match="exceed the model's 4096-token context"):
        evaluate(*tiny, task, [long], model_name="tiny", regime="base")
    assert evaluate(*tiny, task, [], model_name="tiny", regime="base") == []


def test_exported_folders_run_with_the_lm_eval_cli(tiny, task, records, results, tmp_path):
    """The exported folders, moved elsewhere, run with plain `lm_eval` on the model's folder and give the
    same predictions and metrics as `evaluate`."""
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    names = export_lm_eval(task, records, tmp_path / "written")
    assert names == sorted(task_name(task, "test", mode) for mode in MODES)
    (tmp_path / "written").rename(tmp_path / "moved")
    chosen = [task_name(task, "test", "random"), task_name(task, "test", "one-near")]
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--include_path", "moved"]
    command += ["--model_args", f"pretrained={tmp_path / 'model'}", "--tasks", ",".join(chosen)]
    command += ["--limit", "4", "--batch_size", "4", "--log_samples", "--output_path", "out"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = {(r["mode"], r["id"]): r for r in results}
    for mode, name in zip(("random", "one-near"), chosen, strict=True):
        (path,) = (tmp_path / "out").rglob(f"samples_{name}_*.jsonl")
        samples = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(samples) == 4
        for sample in samples:
            mine = ours[(mode, sample["doc"]["id"])]
            assert sample["filtered_resps"][0] == mine["prediction"]
            for metric, value in mine["metrics"].items():
                assert math.isclose(sample[metric], value)
