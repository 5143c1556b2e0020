"""Every bad input fails before any work (issue 19): one line `icl-bench: error: ...` naming the problem
and the fix, exit 2, and nothing written (no --out folder, no store, no artifacts).  The CLI runs
in-process; no case loads a model, since each check fires before one would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_SMOKE, WordsTask, build_words_task, error_line, run_cli

from icl_bench import cli, hookimpl
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.validate import Rows, check_writable, names_in
from icl_bench.report.board import read_environments
from icl_bench.sweep.plan import resolve_regimes

SWEEP = TINY_SMOKE
WITH_OUT = {"run", "evaluate", "probe", "analyze", "leaderboard"}


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def fails(tmp_path, monkeypatch, capsys):
    """Run the CLI in `tmp_path` (its default store inside), with --out a folder not there yet; assert
    exit 2, one `icl-bench: error:` line, nothing written anywhere under tmp_path; return the line."""
    monkeypatch.setenv("ICL_BENCH_STORE", str(tmp_path / "default-store"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> str:
        given = args[0] not in WITH_OUT or "--out" in args
        out = [] if given else ["--out", str(tmp_path / "leaderboards" / "suite")]
        before = files(tmp_path)
        code = cli.main([*args, *out])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("icl-bench: error: "), lines[0]
        assert files(tmp_path) == before  # no --out, no store, no artifact
        return lines[0].removeprefix("icl-bench: error: ")

    return run


SET = "--set 'zero.min_mean_sim={}': {} is not a finite number; pass a finite value"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # --set: NaN, infinities and out-of-range values
        (("run", *SWEEP, "--set", "zero.min_mean_sim=NaN"), SET.format("NaN", "NaN")),
        (("run", *SWEEP, "--set", "zero.min_mean_sim=Infinity"), SET.format("Infinity", "Infinity")),
        (("run", *SWEEP, "--set", "zero.min_mean_sim=-Infinity"), SET.format("-Infinity", "-Infinity")),
        (("run", *SWEEP, "--set", "zero.min_mean_sim=1e999"), SET.format("1e999", "1e999")),
        (
            ("run", *SWEEP, "--set", "contrastive.p_random=1.5"),
            "--set 'contrastive.p_random=1.5': p_random=1.5 is not a probability; pass a value in [0, 1]",
        ),
        (
            ("train", *SWEEP, "--set", "contrastive.p_similar=-0.1"),
            "--set 'contrastive.p_similar=-0.1': p_similar=-0.1 is not a probability; pass a value in [0, 1]",
        ),
        (
            ("run", *SWEEP, "--set", "contrastive.p_paraphrase=null"),
            "--set 'contrastive.p_paraphrase=null': 'null' is not a valid float",
        ),
        (
            ("run", *SWEEP, "--set", "similar.min_mean_sim=1"),
            "--set 'similar.min_mean_sim=1': min_mean_sim is a threshold on a mean cosine similarity; "
            "pass a value in [-1, 1), or null for no filter",
        ),
        (
            ("run", *SWEEP, "--set", "zero.min_mean_sim=0.2"),
            "--set 'zero.min_mean_sim=0.2': regime 'zero' trains without context examples, so "
            "min_mean_sim would drop every training instance; "
            "set it on a regime with contexts (e.g. similar)",
        ),
        # k against every stage that will run
        (
            ("run", *SWEEP, "--k", "1", "--probes"),
            "the copy probe deranges the context's labels, so it needs k >= 2, not 1; pass --k 2",
        ),
        (
            ("run", *SWEEP, "--k", "24"),  # the smoke pool holds 24 examples
            "k=24 needs more than 24 pool examples in task 'synthetic-alignment'; lower --k",
        ),
        # --precision and --learning-rate, for every command that takes them
        (
            ("analyze", "ft-vs-icl", "--precision", "bogus"),
            "argument --precision: invalid choice: 'bogus' (choose from 'auto', 'fp32', 'bf16'); "
            "see `icl-bench analyze --help`",
        ),
        (
            ("run", *SWEEP, "--precision", "bogus"),
            "argument --precision: invalid choice: 'bogus' (choose from 'auto', 'fp32', 'bf16'); "
            "see `icl-bench run --help`",
        ),
        (
            ("train", *SWEEP, "--learning-rate", "nan"),
            "argument --learning-rate: nan is not a finite positive number; see `icl-bench train --help`",
        ),
        (
            ("analyze", "ft-vs-icl", "--learning-rate", "0"),
            "argument --learning-rate: 0 is not a finite positive number; see `icl-bench analyze --help`",
        ),
        # empty or repeated list options
        *[
            (
                (command, *SWEEP, "--tasks", text),
                f"--tasks {text!r} names no tasks; pass one or more names, comma-separated "
                "(`icl-bench list tasks` lists them)",
            )
            for command in ("run", "train", "evaluate", "probe")
            for text in ("", ",", " , ")
        ],
        (
            ("run", "--models", "", "--size", "smoke", "--tasks", "synthetic-alignment"),
            "--models '' names no models; pass one or more names, comma-separated "
            "(`icl-bench list models` lists them)",
        ),
        (
            ("run", *SWEEP, "--regimes", ""),
            "--regimes '' names no regimes; pass one or more names, comma-separated "
            "(`icl-bench list regimes` lists them)",
        ),
        (
            ("contexts", "--task", "synthetic-alignment", "--regimes", ","),
            "--regimes ',' names no regimes; pass one or more names, comma-separated "
            "(`icl-bench list regimes` lists them)",
        ),
        (
            ("analyze", "ft-vs-icl", "--tasks", ""),
            "--tasks '' names no tasks; pass one or more names, comma-separated "
            "(`icl-bench list tasks` lists them)",
        ),
        (
            ("run", "--models", "tiny,tiny", "--size", "smoke", "--tasks", "synthetic-alignment"),
            "--models 'tiny,tiny' names 'tiny' twice; name each of the models once",
        ),
        # analyze: the fine-tuning configs, before any task's data is fetched
        (
            ("analyze", "ft-vs-icl", "--seed", "-1"),
            "train config: seed must be a non-negative integer, got -1",
        ),
    ],
)
def test_bad_options_fail_in_one_line_before_any_work(fails, args, message):
    assert fails(*args) == message


def test_in_a_fresh_process_the_error_is_the_only_stderr_line(tmp_path):
    """No library prints past the check: the whole stderr of a real process is the one line."""
    out = tmp_path / "leaderboards" / "suite"
    done = run_cli("run", *SWEEP, "--set", "zero.min_mean_sim=NaN", "--out", str(out), cwd=tmp_path)
    assert error_line(done) == "icl-bench: error: " + SET.format("NaN", "NaN")
    assert done.stdout == "" and list(tmp_path.iterdir()) == []  # no --out, no default store


def test_unwritable_out_fails_and_a_failing_command_creates_no_out(fails, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = fails("run", *SWEEP, "--out", str(blocker / "suite"))
    assert line == f"{blocker / 'suite'} is not writable (Not a directory); pass a writable folder with --out"
    line = fails(
        "run", "--models", "nonesuch", "--size", "smoke", "--tasks", "synthetic-alignment"
    )  # fails after --out was checked
    assert line.startswith("unknown model 'nonesuch'; known models: ")
    line = fails("leaderboard", "--results", str(tmp_path / "nowhere"))
    assert "nowhere does not exist" in line


def test_check_writable_creates_nothing(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    assert check_writable(deep, "--out") == deep and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"file/c is not writable \(Not a directory\); .* with --out"):
        check_writable(tmp_path / "file" / "c", "--out")
    assert check_writable(tmp_path, "--out") == tmp_path and sorted(tmp_path.iterdir()) == [tmp_path / "file"]


def test_names_in_is_the_one_list_check():
    assert names_in("--tasks", " a, b ,c,", "tasks") == ["a", "b", "c"]
    for text in ("", ",", " ,, "):
        with pytest.raises(UsageError, match=f"--tasks {text!r} names no tasks"):
            names_in("--tasks", text, "tasks")
    with pytest.raises(UsageError, match="names 'a' twice"):
        names_in("--tasks", "a,b,a", "tasks")


def test_set_values_are_typed_and_an_int_probability_is_a_float():
    (regime,) = resolve_regimes("contrastive", ["contrastive.p_paraphrase=0"])
    assert regime.p_paraphrase == 0.0 and isinstance(regime.p_paraphrase, float)
    (similar,) = resolve_regimes("similar", ["similar.min_mean_sim=0.4", "similar.min_mean_sim=null"])
    assert similar.min_mean_sim is None  # an optional field takes null back
    (similar,) = resolve_regimes("similar", ["similar.min_mean_sim=-1"])
    assert similar.min_mean_sim == -1.0


# --- local data (BIRD, MTOP): the file and the missing field -------------------------------------


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([{}], "row 0 has no field 'db_id'"),
        ({"a": 1}, "holds an object, not a list of rows"),
        ([{"db_id": "x", "question": "q?"}], "row 0 has no field 'SQL' or 'query'"),
        ([{"db_id": 3, "question": "q?", "SQL": "SELECT 1"}], "row 0's 'db_id' is a number, not a string"),
        ([], "holds no rows"),
    ],
)
def test_bird_rows_name_the_file_and_the_field(fails, tmp_path, rows, problem):
    folder = tmp_path / "bird"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "dev.json").write_text("[]")
    line = fails("run", *SWEEP, "--tasks", "text2sql-bird", "--data-dir", str(folder))
    assert line.startswith(
        f"{folder / 'train.json'} is not in BIRD's layout ({problem}); expected a list of "
    )
    assert line.endswith(
        "download BIRD's train and dev sets from https://bird-bench.github.io/ and unpack them there"
    )


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([{}], "row 0 has no field 'question'"),
        ({"a": 1}, "holds an object, not a list of rows"),
        ([{"question": {"es": "hola"}}], "row 0 has no field 'mr.slot_intent'"),
        (
            [{"question": {"es": 1}, "mr": {"slot_intent": {}}}],
            "row 0's 'question.es' is a number, not a string",
        ),
        ([7], "row 0 is a number, not an object"),
    ],
)
def test_mtop_rows_name_the_file_and_the_field(fails, tmp_path, rows, problem):
    folder = tmp_path / "mtop"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "test.json").write_text("[]")
    line = fails("run", *SWEEP, "--tasks", "mtop-es", "--data-dir", str(folder))
    assert line.startswith(f"{folder / 'train.json'} is not in XSemPLR's MTOP layout ({problem}); expected ")
    assert "XSemPLR" in line.rsplit(";", 1)[1]  # the fix


def test_layout_field_reads_alternatives_and_nesting(tmp_path):
    rows = Rows(tmp_path / "f.json", "a layout", "a list of rows")
    row = {"query": "q", "mr": {"form": {"es": "x"}}}
    assert rows.field(0, row, "SQL|query") == "q" and rows.field(0, row, "mr.form.es") == "x"
    assert rows.field(0, row, "evidence", required=False) is None
    with pytest.raises(UsageError) as raised:
        rows.field(0, row, "mr")
    problem = "is not in a layout (row 0's 'mr' is an object, not a string); expected a list of rows"
    assert str(raised.value) == f"{tmp_path / 'f.json'} {problem}"


# --- a results folder's environment.json -----------------------------------------------------------


def write_results(root: Path) -> Path:
    """results/toy/m1: base and zero, 4 modes x 6 examples each, and bins.json."""
    task = root / "results" / "toy"
    (task / "m1").mkdir(parents=True)
    (task / "bins.json").write_text(json.dumps({"task": "toy", "method": "fixed", "edges": [0.3, 0.6]}))
    for regime in ("base", "zero"):
        lines = []
        for mode in ("random", "similar", "one-near", "paraphrase"):
            for i in range(6):
                score = float(i % 2)
                record = {"task": "toy", "model": "m1", "regime": regime, "split": "test", "mode": mode}
                record |= {
                    "id": f"t{i}",
                    "prediction": "p",
                    "score": score,
                    "metrics": {"exact-match": score},
                }
                lines.append(json.dumps({**record, "max_sim": (i + 0.5) / 6}) + "\n")
        (task / "m1" / f"{regime}.jsonl").write_text("".join(lines))
    return root / "results"


@pytest.mark.parametrize("recorded", ["[1, 2]", '{"base": "x"}', '{"base": {"evaluate": 3}}',
                                      '{"base": {"evaluate": {"packages": [1]}}}'])  # fmt: skip
def test_a_malformed_environment_record_is_one_line(fails, tmp_path, recorded):
    results = write_results(tmp_path)
    path = results / "toy" / "m1" / "environment.json"
    path.write_text(recorded)
    line = fails("leaderboard", "--results", str(results))
    assert line == (
        f"{path} is not an environment record (an object of regime -> {{train, evaluate}}); delete it "
        "and rerun `icl-bench run` with the suite's options to record it again"
    )


def test_a_well_formed_environment_record_is_read(tmp_path):
    results = write_results(tmp_path)
    env = {"python": "3.11", "packages": {"torch": "2"}}
    (results / "toy" / "m1" / "environment.json").write_text(
        json.dumps({"zero": {"train": env, "evaluate": None}})
    )
    found = read_environments(results)
    assert found[("toy", "m1", "zero", "train")] == env and found[("toy", "m1", "base", "evaluate")] is None


# --- what each task needs, checked for every task before the first one's work ----------------------


class ChoiceWords(WordsTask):
    """The words task as multiple choice: its labels are "even" and "odd"."""

    choices = ("even", "odd")


class _Tasks:
    @hookimpl
    def register_tasks(self, register):
        built = build_words_task("no-paraphrase", n_train=60, n_test=4)
        register(WordsTask("no-paraphrase", built.load("train"), built.load("test"), None))
        register(ChoiceWords("choice-words", built.load("train"), built.load("test"), None))


@pytest.fixture
def words_tasks():
    plugins.pm.register(_Tasks(), name="tests-bad-inputs")
    plugins.refresh()
    yield
    plugins.pm.unregister(name="tests-bad-inputs")
    plugins.refresh()


def test_a_later_task_that_cannot_have_the_regime_fails_before_the_first(fails, words_tasks):
    tasks = ("--tasks", "synthetic-alignment,no-paraphrase")
    line = fails("run", *SWEEP, *tasks, "--regimes", "contrastive")
    assert line == (
        "regime 'contrastive' uses paraphrases but task 'no-paraphrase' has no paraphraser; "
        "pick another regime or set contrastive.p_paraphrase=0"
    )
    line = fails("run", *SWEEP, *tasks, "--regimes", "zero", "--paraphraser", "symbol-shuffle")
    assert line == "task 'no-paraphrase' has no paraphrase mode; drop --paraphraser for it"
    line = fails("run", *SWEEP, "--tasks", "no-paraphrase", "--regimes", "zero", "--probes")
    assert line.startswith("task 'no-paraphrase' has no paraphraser: the ICL and copy probes need one")


def test_analyze_checks_every_task_before_the_first_ones_work(fails, words_tasks):
    line = fails("analyze", "ft-vs-icl", "--tasks", "choice-words,synthetic-alignment")
    assert line == (
        "analyze ft-vs-icl needs a classification task (label choices); synthetic-alignment has none"
    )
    line = fails("analyze", "ft-vs-icl", "--tasks", "choice-words", "--k", "100")
    assert line == "choice-words: --k 100 needs that many pool examples; it has 62"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--launcher", "deepspeed", "--hostfile", "/nonexistent/hostfile"],
            "--hostfile /nonexistent/hostfile is not a file",
        ),
        (["--hostfile", __file__], "--hostfile is read by the deepspeed launcher only"),
    ],
)
def test_a_bad_hostfile_is_refused_before_any_work(tmp_path, capsys, extra, message):
    from icl_bench import cli

    out = tmp_path / "suite"
    code = cli.main(
        [
            "run",
            *TINY_SMOKE,
            "--out",
            str(out),
            "--store",
            str(tmp_path / "s"),
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not out.exists() and not (tmp_path / "s").exists()


def test_a_results_path_that_is_a_file_is_named_so(tmp_path):
    from icl_bench.core.errors import UsageError
    from icl_bench.score.results import load_results

    (tmp_path / "r").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        load_results(tmp_path / "r")
