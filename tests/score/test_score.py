"""The score stage: bin edges, bin assignment, bootstrap CIs, summaries and reading results."""

import json

import numpy as np
import pytest

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.score.bins import bin_edges, bin_of
from icl_bench.score.results import load_results
from icl_bench.score.schema import Record
from icl_bench.score.summary import Cell, summarise


def record(regime="base", mode="random", id="t0", score=1.0, max_sim=0.5, model="m", split="test"):
    return Record("toy", model, regime, split, mode, id, score, max_sim)


def test_tertile_edges_split_uniform_sample_into_thirds():
    sims = np.random.default_rng(1).uniform(size=3000)
    edges = bin_edges([*sims, None, float("nan")])
    counts = {name: 0 for name in ("Low", "Medium", "High")}
    for s in sims:
        counts[bin_of(s, edges)] += 1
    assert counts == {"Low": 1000, "Medium": 1000, "High": 1000}
    assert edges == pytest.approx((1 / 3, 2 / 3), abs=0.03)
    assert bin_edges(list(reversed(sims))) == edges  # order-independent


def test_fixed_edges_and_their_errors():
    assert bin_edges([0.1], method="fixed", fixed=[0.2, 0.7]) == (0.2, 0.7)
    for bad in ([0.7, 0.2], [0.5, 0.5], [0.1], [0.1, float("inf")]):
        with pytest.raises(UsageError, match="fixed bin"):
            bin_edges([], method="fixed", fixed=bad)
    with pytest.raises(UsageError, match="fixed bin edges were given"):
        bin_edges([0.1], fixed=[0.2, 0.7])
    with pytest.raises(UsageError, match="unknown bin method"):
        bin_edges([0.1], method="quartiles")
    with pytest.raises(UsageError, match="no max_sim"):
        bin_edges([None, None])


def test_bin_of_at_the_edges():
    edges = (0.3, 0.6)
    assert [bin_of(s, edges) for s in (0.0, 0.2999, 0.3, 0.5999, 0.6, 1.0)] == [
        "Low",
        "Low",
        "Medium",
        "Medium",
        "High",
        "High",
    ]


def test_summarise_modes_and_bins():
    records = [
        record(mode="random", id="a", score=0.0, max_sim=0.1),
        record(mode="random", id="b", score=1.0, max_sim=0.9),
        record(mode="similar", id="a", score=1.0, max_sim=0.95),
        record(mode="similar", id="b", score=1.0, max_sim=None),
        record(regime="zero", mode="random", id="a", score=0.5, max_sim=0.4),
    ]
    rows = summarise(records, (0.3, 0.6))
    table = {(r.regime, r.kind, r.column): r.cell for r in rows}
    assert table[("base", "mode", "random")].mean == 0.5
    assert table[("base", "mode", "random")].n == 2
    assert table[("base", "mode", "similar")] == Cell(1.0, 1.0, 1.0, 2, 2)
    assert table[("base", "bin", "Low")] == Cell(0.0, 0.0, 0.0, 1, 1)
    assert table[("base", "bin", "High")] == Cell(1.0, 1.0, 1.0, 2, 2)  # None max_sim left out of bins
    assert ("base", "bin", "Medium") not in table
    assert table[("zero", "bin", "Medium")].n == 1
    assert [(r.regime, r.kind, r.column) for r in rows] == sorted(table)
    assert summarise(list(reversed(records)), (0.3, 0.6)) == rows


def write_task(root, lines, bins=None):
    folder = root / "toy" / "m"
    folder.mkdir(parents=True)
    if bins is not None:
        (root / "toy" / "bins.json").write_text(json.dumps(bins))
    (folder / "base.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder / "base.jsonl"


def line(**changes):
    raw = {
        "task": "toy",
        "model": "m",
        "regime": "base",
        "split": "test",
        "mode": "random",
        "id": "t0",
        "prediction": "x",
        "score": 1.0,
        "metrics": {"exact-match": 1.0, "chrf": 50.0},
        "max_sim": 0.5,
    }
    raw.update(changes)
    return json.dumps(raw)


def test_load_results_reads_bins_and_infers_metric(tmp_path):
    bins = {"task": "toy", "method": "fixed", "edges": [0.2, 0.8]}
    write_task(tmp_path, [line(id="a"), line(id="b", score=0.0, metrics={"exact-match": 0.0})], bins)
    (task,) = load_results(tmp_path)
    assert (task.task, task.metric, task.bins.method, task.bins.edges) == (
        "toy",
        "exact-match",
        "fixed",
        (0.2, 0.8),
    )
    assert [r.id for r in task.records] == ["a", "b"]


def test_load_results_without_bins_json_takes_tertiles(tmp_path):
    write_task(tmp_path, [line(id=str(i), max_sim=i / 8) for i in range(9)])
    (task,) = load_results(tmp_path)
    assert task.bins.method == "tertiles"
    assert task.bins.edges == pytest.approx((8 / 3 / 8, 16 / 3 / 8))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"base\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"base\.jsonl:2: a record must be a JSON object"),
        (line(id="b", score="high"), r"base\.jsonl:2: field 'score' must be a finite number"),
        (json.dumps({"task": "toy"}), r"base\.jsonl:2: missing field\(s\) model"),
        (line(id="b", max_sim="x"), r"base\.jsonl:2: field 'max_sim'"),
        (line(id="a"), r"base\.jsonl:2: duplicate record for id 'a'"),
        (line(id="b", task="other"), r"base\.jsonl:2: record is for task 'other'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    write_task(tmp_path, [line(id="a"), text])
    with pytest.raises(UsageError, match=message):
        load_results(tmp_path)


def test_missing_or_empty_results(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_results(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="no task folders"):
        load_results(tmp_path)
    write_task(tmp_path, [], {"task": "toy", "method": "tertiles", "edges": [0.2, 0.8]})
    with pytest.raises(UsageError, match=r"base\.jsonl holds no records"):  # an emptied file is damage
        load_results(tmp_path)


def test_bad_bins_json(tmp_path):
    write_task(tmp_path, [line()], {"task": "toy", "method": "tertiles", "edges": [0.8, 0.2]})
    with pytest.raises(UsageError, match=r"bins\.json: edges .* increasing"):
        load_results(tmp_path)


HYPOTHESES = ["Das ist ein Test.", "Hallo Welt", "Geben Sie eine E-Mail-Adresse ein.", "", "Speichern"]
REFERENCES = [
    "Dies ist ein Test.",
    "Hallo, Welt!",
    "Geben Sie eine gültige E-Mail-Adresse ein.",
    "Ja",
    "Sichern",
]


@pytest.mark.parametrize("name", ["chrf", "bleu"])
def test_corpus_metrics_from_summed_statistics_equal_sacrebleu_corpus_scores(name):
    from sacrebleu.metrics import BLEU, CHRF

    metric = plugins.metrics[name]
    examples = [Example(str(i), "source", ref) for i, ref in enumerate(REFERENCES)]
    stats = np.array(metric.statistics(HYPOTHESES, examples))
    reference = CHRF(word_order=2) if name == "chrf" else BLEU()
    assert metric.corpus(stats.sum(axis=0)) == pytest.approx(
        reference.corpus_score(HYPOTHESES, [REFERENCES]).score
    )
    sentence = metric(HYPOTHESES, examples)
    assert metric.corpus(stats.sum(axis=0)) != pytest.approx(np.mean(sentence))  # not the sentence mean


def test_a_cell_of_a_corpus_metric_is_the_corpus_score_of_its_records_with_a_bootstrap_ci():
    metric = plugins.metrics["chrf"]
    examples = [Example(str(i), "source", ref) for i, ref in enumerate(REFERENCES)]
    stats = metric.statistics(HYPOTHESES * 4, examples * 4)
    sentence = metric(HYPOTHESES * 4, examples * 4)
    records = [
        Record("toy", "m", "base", "test", "random", f"t{i:02d}", s, 0.1 if i % 2 else 0.9, tuple(row))
        for i, (s, row) in enumerate(zip(sentence, stats, strict=True))
    ]
    rows = summarise(records, (0.3, 0.6), corpus=metric.corpus)
    table = {(r.kind, r.column): r.cell for r in rows}
    whole = table[("mode", "random")]
    assert whole.mean == pytest.approx(metric.corpus(np.sum(stats, axis=0)))
    assert whole.lo < whole.mean < whole.hi and whole.n == 20
    low = [row for i, row in enumerate(stats) if i % 2]
    assert table[("bin", "Low")].mean == pytest.approx(metric.corpus(np.sum(low, axis=0)))
    assert summarise(records, (0.3, 0.6)) != rows  # without corpus: the sentence mean
    assert summarise(list(reversed(records)), (0.3, 0.6), corpus=metric.corpus) == rows


def test_results_with_statistics_are_scored_by_their_corpus_metric(tmp_path):
    bins = {"task": "toy", "metric": "chrf", "method": "fixed", "edges": [0.2, 0.8]}
    stats = [[1.0] * 24, [2.0] * 24]
    write_task(tmp_path, [line(id=str(i), score=50.0, stats=row) for i, row in enumerate(stats)], bins)
    (task,) = load_results(tmp_path)
    assert task.corpus == plugins.metrics["chrf"].corpus and task.records[1].stats == tuple(stats[1])


@pytest.mark.parametrize(
    ("stats", "message"),
    [
        ([[1.0] * 24, None], "some records carry chrf statistics and some do not"),
        ([[1.0] * 24, [1.0] * 10], "some records carry chrf statistics and some do not"),
        ([[1.0], [1.0]], None),
        (["x", None], "field 'stats' must be a list of numbers"),
    ],
)
def test_bad_statistics_are_one_line(tmp_path, stats, message):
    bins = {
        "task": "toy",
        "metric": "exact-match" if message is None else "chrf",
        "method": "fixed",
        "edges": [0.2, 0.8],
    }
    score = {"score": 50.0} if bins["metric"] == "chrf" else {}  # the record's own chrf
    rows = [
        line(id=str(i), **score, **({} if row is None else {"stats": row})) for i, row in enumerate(stats)
    ]
    write_task(tmp_path, rows, bins)
    message = message or "records carry statistics of 'exact-match', which is not an installed corpus metric"
    with pytest.raises(UsageError, match=message):
        load_results(tmp_path)
