"""Text-to-SQL: the sandboxed execution metric against hostile SQL (each case scores 0 with its reason and
leaves the database's bytes unchanged), result-set comparison, the synthetic task, the sql-constants
paraphraser, the BIRD loader on a tiny folder in the official layout, and one end-to-end smoke run."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time

import pytest
from helpers import run_cli

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl
from icl_bench.core.store import STORE_ENV, default_root
from icl_bench.tasks.text2sql.bird import BIRD_ENV, BirdText2SQL
from icl_bench.tasks.text2sql.execution import (
    DB_KEY,
    ExecutionMatch,
    Limits,
    orders_at_top_level,
    run,
)
from icl_bench.tasks.text2sql.schema import lexical_filter, read_schema
from icl_bench.tasks.text2sql.synthetic import SyntheticText2SQL

LIMITS = Limits(seconds=0.5, rows=1_000)


def make_db(path, rows: int = 60) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER);"
        "CREATE TABLE pets (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES people(id), kind TEXT);"
    )
    cities = ["Oslo", "Lyon", "Porto"]
    conn.executemany(
        "INSERT INTO people VALUES (?, ?, ?, ?)",
        [(i, f"p{i}", cities[i % 3], 20 + i % 7) for i in range(1, rows + 1)],
    )
    conn.executemany(
        "INSERT INTO pets VALUES (?, ?, ?)", [(i, i, ("cat", "dog")[i % 2]) for i in range(1, 11)]
    )
    conn.commit()
    conn.close()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "hostile.sqlite"
    make_db(path)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


RUNAWAY_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"
HOSTILE = [
    ("DROP TABLE people", "denied: "),
    ("DELETE FROM people", "denied: DELETE people"),
    ("UPDATE people SET age = 1", "denied: UPDATE people"),
    ("INSERT INTO people VALUES (999, 'x', 'y', 1)", "denied: INSERT people"),
    ("REPLACE INTO pets VALUES (1, 1, 'fish')", "denied: INSERT pets"),
    ("ATTACH DATABASE '{evil}' AS evil", "denied: ATTACH"),
    ("DETACH main", "denied: DETACH"),
    ("PRAGMA user_version = 5", "denied: PRAGMA write user_version"),
    ("PRAGMA journal_mode = WAL", "denied: PRAGMA write journal_mode"),
    ("PRAGMA query_only = OFF", "denied: PRAGMA write query_only"),
    ("PRAGMA main.user_version = 5", "denied: PRAGMA write user_version"),
    ("PRAGMA writable_schema = ON", "denied: PRAGMA write writable_schema"),
    ("PRAGMA hard_heap_limit = 0", "denied: PRAGMA write hard_heap_limit"),
    ("PRAGMA optimize", "denied: PRAGMA optimize"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", "denied: PRAGMA write wal_checkpoint"),
    ("PRAGMA incremental_vacuum(1)", "denied: PRAGMA write incremental_vacuum"),
    # pragma functions: SQLite runs "PRAGMA optimize='-1'" (an assignment) under the authorizer
    ("SELECT * FROM pragma_optimize(-1)", "denied: PRAGMA write optimize"),
    ("SELECT * FROM pragma_optimize", "denied: PRAGMA optimize"),
    ("SELECT * FROM pragma_writable_schema", "denied: PRAGMA writable_schema"),
    ("SELECT * FROM pragma_user_version(5)", "error: too many arguments on pragma_user_version()"),
    ("SELECT * FROM pragma_table_info('people') JOIN pragma_optimize", "denied: PRAGMA optimize"),
    ("UPDATE sqlite_master SET sql = ''", "error: table sqlite_master may not be modified"),
    ("VACUUM INTO '{evil}'", "denied: ATTACH"),
    ("CREATE TEMP TABLE t (a)", "denied: INSERT sqlite_temp_master"),
    ("BEGIN", "denied: TRANSACTION"),
    ("SELECT load_extension('/nonexistent/evil.so')", "denied: function load_extension"),
    (RUNAWAY_CTE, "too many rows (over 1000)"),
    (RUNAWAY_CTE.replace("SELECT x FROM c", "SELECT count(*) FROM c"), "time limit (0.5 s)"),
    ("SELECT * FROM people a, people b, people c", "too many rows (over 1000)"),
    ("SELECT count(*) FROM people a, people b, people c, people d, people e", "time limit (0.5 s)"),
    ("SELECT length(randomblob(200000000))", "memory limit: "),
    ("SELECT printf('%.*c', 2000000000, 'x')", "denied: function printf"),
    ("SELECT " + "(" * 5000 + "1" + ")" * 5000, "error: parser stack overflow"),
    ("CREATE VIEW v AS SELECT 1", "denied: INSERT sqlite_master"),
    ("ALTER TABLE people ADD COLUMN z", "denied: ALTER_TABLE"),
    ("SELEC name FROM people", "syntax error: "),
    ("SELECT name FROM people WHERE", "syntax error: "),
    ("SELECT 1; DROP TABLE people", "error: You can only execute one statement at a time"),
    ("SELECT nosuchcolumn FROM people", "error: no such column"),
    ("", "empty query"),
]


def test_hostile_sql_scores_zero_with_its_reason_and_never_changes_the_database(db, tmp_path):
    before = digest(db)
    evil = tmp_path / "evil.sqlite"
    metric = ExecutionMatch(LIMITS)
    gold = Example("g", "how many people?", "SELECT COUNT(*) FROM people", {DB_KEY: str(db)})
    started = time.monotonic()
    for sql, reason in HOSTILE:
        verdict = metric.judge(sql.format(evil=evil), gold)
        assert verdict.score == 0.0, sql
        assert verdict.reason.startswith(reason), (sql, verdict.reason)
        assert "\n" not in verdict.reason
    scores, reasons = metric.explained([h[0].format(evil=evil) for h in HOSTILE], [gold] * len(HOSTILE))
    assert scores == [0.0] * len(HOSTILE) and metric([HOSTILE[0][0]], [gold]) == [0.0]
    assert all(why.startswith(r) for why, (_, r) in zip(reasons, HOSTILE, strict=True))
    assert time.monotonic() - started < 20  # four 0.5 s deadlines, the rest instant
    assert digest(db) == before
    assert not evil.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.sqlite"]  # no journal, WAL or copy
    assert metric.judge("SELECT COUNT(*) FROM people", gold).score == 1.0  # still usable afterwards


def test_time_limit_is_configurable_and_wall_clock(db):
    started = time.monotonic()
    result = run(db, RUNAWAY_CTE.replace("SELECT x FROM c", "SELECT max(x) FROM c"), Limits(seconds=0.2))
    assert result.reason == "time limit (0.2 s)"
    assert time.monotonic() - started < 2


def test_one_long_function_call_is_stopped_by_killing_the_worker(db):
    """`instr` on megabyte strings runs for seconds inside one VM step, between progress checks: the
    parent kills the worker `grace` seconds after the deadline, and the next query gets a new one."""
    a_run = "replace(hex(zeroblob({})), '0', 'a')"
    slow = f"SELECT instr({a_run.format(1_000_000)}, {a_run.format(500_000)} || 'b')"
    started = time.monotonic()
    result = run(db, slow, Limits(seconds=0.2, grace=0.3))
    assert result.reason == "time limit (0.2 s; the worker was killed)"
    assert time.monotonic() - started < 3
    assert run(db, "SELECT COUNT(*) FROM pets", LIMITS).rows == [(10,)]


def test_the_worker_memory_limit_stops_huge_results(db):
    huge = RUNAWAY_CTE.replace(") SELECT x FROM c", " LIMIT 900) SELECT zeroblob(1000000) FROM c")
    no_size_cap = Limits(address_bytes=512 << 20, seconds=20, result_bytes=4 << 30)
    result = run(db, huge, no_size_cap)
    assert result.reason is not None and result.reason.startswith("memory limit")
    assert run(db, "SELECT 1", Limits(address_bytes=512 << 20)).rows == [(1,)]


def test_the_row_limit_counts_rows_not_batches(db):
    assert run(db, "SELECT * FROM people", Limits(rows=60)).rows is not None
    assert run(db, "SELECT * FROM people", Limits(rows=59)).reason == "too many rows (over 59)"


def test_a_missing_database_or_gold_failure_scores_zero(tmp_path, db):
    metric = ExecutionMatch(LIMITS)
    missing = Example("m", "q", "SELECT 1", {DB_KEY: str(tmp_path / "none.sqlite")})
    assert metric.judge("SELECT 1", missing).reason.startswith("gold query failed: cannot open database")
    assert not (tmp_path / "none.sqlite").exists()  # mode=ro never creates it
    broken = Example("b", "q", "SELECT name FROM nowhere", {DB_KEY: str(db)})
    assert metric.judge("SELECT 1", broken).reason.startswith("gold query failed: error: no such table")
    assert metric.judge("SELECT 1", Example("n", "q", "SELECT 1")).reason.endswith("no meta['db_path']")


@pytest.mark.parametrize(
    ("gold", "prediction", "score"),
    [
        ("SELECT name FROM people WHERE age = 21", "SELECT name FROM people WHERE age = 21", 1.0),
        # multisets: any order when the gold does not order, duplicates count
        (
            "SELECT city FROM people WHERE id <= 4",
            "SELECT city FROM people WHERE id <= 4 ORDER BY id DESC",
            1.0,
        ),
        ("SELECT city FROM people WHERE id <= 4", "SELECT DISTINCT city FROM people WHERE id <= 4", 0.0),
        # the columns in the given order; names and aliases do not matter
        (
            "SELECT name, age FROM people WHERE id = 3",
            "SELECT name AS n, age AS a FROM people WHERE id = 3",
            1.0,
        ),
        ("SELECT name, age FROM people WHERE id = 3", "SELECT age, name FROM people WHERE id = 3", 0.0),
        # order only where the gold orders at top level
        ("SELECT id FROM people WHERE id < 5 ORDER BY id DESC", "SELECT id FROM people WHERE id < 5", 0.0),
        (
            "SELECT id FROM people WHERE id < 5 ORDER BY id DESC",
            "SELECT id FROM people WHERE id < 5 ORDER BY -id",
            1.0,
        ),
        (
            "SELECT id FROM (SELECT id FROM people ORDER BY id DESC LIMIT 3)",
            "SELECT id FROM people WHERE id > 57",
            1.0,
        ),
        # 3 == 3.0; different values do not match
        ("SELECT COUNT(*) FROM pets", "SELECT 10.0", 1.0),
        ("SELECT AVG(age) FROM people", "SELECT AVG(age) + 1 FROM people", 0.0),
        ("SELECT name FROM people WHERE id = 1", "SELECT name FROM people WHERE id = 2", 0.0),
    ],
)
def test_result_sets_compare_as_multisets_ordered_only_when_gold_orders(db, gold, prediction, score):
    metric = ExecutionMatch(LIMITS)
    verdict = metric.judge(prediction, Example("e", "q", gold, {DB_KEY: str(db)}))
    assert verdict.score == score, verdict
    assert verdict.reason == "match" if score else verdict.reason.startswith("mismatch: ")


def test_top_level_order_by_ignores_subqueries_strings_and_comments():
    assert orders_at_top_level("SELECT a FROM t ORDER BY a")
    assert orders_at_top_level("select a from (select a from t order by a) x order by a desc")
    assert not orders_at_top_level("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 3)")
    assert not orders_at_top_level("SELECT 'order by' FROM t -- order by a")
    assert not orders_at_top_level('SELECT "order by" FROM t /* ORDER BY */')


def test_schema_filter_keeps_the_tables_the_question_mentions(db):
    schema = read_schema(str(db))
    assert [t.name for t in schema] == ["people", "pets"]
    assert lexical_filter(schema, "Which kind of pets are there?") == (  # pets, and people it references
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER);\n"
        "CREATE TABLE pets (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES people(id), kind TEXT);"
    )
    assert lexical_filter(schema, "List the names of people by age.").startswith("CREATE TABLE people (")
    assert "pets" not in lexical_filter(schema, "List the names of people by age.")
    assert "pets" in lexical_filter(schema, "Which kind is the most common?")  # a column, no table named
    assert lexical_filter(schema, "How old is the oldest person?").count("CREATE TABLE") == 2  # no match


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> SyntheticText2SQL:
    return SyntheticText2SQL(root=tmp_path_factory.mktemp("synthetic"))


def test_synthetic_task_is_deterministic_and_every_gold_query_runs(synthetic, tmp_path):
    train, test = synthetic.load("train"), synthetic.load("test")
    assert len(train) > 60 and len(test) > 20
    assert not {ex.input for ex in train} & {ex.input for ex in test}
    templates = {ex.meta["template"] for ex in train}
    assert len(templates) >= 8 and {ex.meta["template"] for ex in test} <= templates
    again = SyntheticText2SQL(root=tmp_path)
    assert [(ex.id, ex.input, ex.output) for ex in again.load("test")] == [
        (ex.id, ex.input, ex.output) for ex in test
    ]
    assert digest(again.database) == digest(synthetic.database)  # the same bytes from the same seed
    metric = ExecutionMatch()
    everything = train + test
    assert metric([ex.output for ex in everything], everything) == [1.0] * len(everything)
    assert all(metric.gold(ex).rows for ex in everything)  # no empty gold result
    assert all("\n" not in ex.output for ex in everything)
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        synthetic.load("dev")


def test_synthetic_prompt_has_instructions_filtered_schema_examples_and_question(synthetic):
    train, target = synthetic.load("train"), synthetic.load("test")[0]
    prompt = synthetic.prompt(train[:2], target)
    assert prompt.startswith("Write one SQLite query")
    assert "CREATE TABLE" in prompt and prompt.index("CREATE TABLE") < prompt.index("Examples:")
    assert prompt.endswith(f"Question: {target.input}\nSQL:")
    assert f"Question: {train[1].input}\nSQL: {train[1].output}\n" in prompt
    assert synthetic.generation.stop == ("\n",)
    assert plugins.tasks["text2sql-synthetic"].metric == "execution-match"
    ask_projects = Example("x", "Which projects have a budget above 5?", "", target.meta)
    assert "employees" not in synthetic.schema_text(ask_projects)


def test_sql_constants_rewrites_sql_and_question_with_values_of_the_same_column(synthetic):
    paraphraser = plugins.paraphrasers["sql-constants"]
    metric = ExecutionMatch()
    changed = 0
    for target in synthetic.load("test"):
        made = paraphraser(target, random.Random(1))
        assert made == paraphraser(target, random.Random(2))  # deterministic given the target
        assert made.meta[DB_KEY] == target.meta[DB_KEY]
        if made.output == target.output:
            assert made.input == target.input
            continue
        changed += 1
        assert made.input != target.input
        assert metric.gold(Example("p", made.input, made.output, made.meta)).ok  # y~ runs
    assert changed >= len(synthetic.load("test")) // 2
    target = Example(
        "t",
        "How many employees with the title Clerk were hired after 2016?",
        "SELECT COUNT(*) FROM employees e WHERE e.title = 'Clerk' AND hire_year > 2016",
        synthetic.load("test")[0].meta,
    )
    made = paraphraser(target, random.Random(0))
    new_title = made.output.split("e.title = '")[1].split("'")[0]
    new_year = made.output.rsplit("> ", 1)[1]
    assert new_title in {"Analyst", "Designer", "Engineer", "Manager"} and new_year != "2016"
    assert made.input == f"How many employees with the title {new_title} were hired after {new_year}?"


def write_bird(root) -> None:
    """BIRD's official layout with two made-up databases."""
    for part, db in (("train", "shop"), ("dev", "zoo")):
        folder = root / f"{part}_databases" / db
        folder.mkdir(parents=True)
        make_db(folder / f"{db}.sqlite", rows=9)
    train = [
        {"db_id": "shop", "question": "How many people?", "evidence": "",
         "SQL": "SELECT COUNT(*) FROM people"},
        {"db_id": "shop", "question": "Names in Oslo?", "evidence": "Oslo is a city",
         "SQL": "SELECT name\n  FROM people WHERE city = 'Oslo'"},
    ]  # fmt: skip
    dev = [
        {"question_id": 0, "db_id": "zoo", "question": "How many pets?", "evidence": "",
         "SQL": "SELECT COUNT(*) FROM pets", "difficulty": "simple"},
    ]  # fmt: skip
    (root / "train.json").write_text(json.dumps(train))
    (root / "dev.json").write_text(json.dumps(dev))


def test_bird_loads_the_official_layout(tmp_path, monkeypatch):
    write_bird(tmp_path)
    monkeypatch.setenv(BIRD_ENV, str(tmp_path))
    task = BirdText2SQL()
    task.check()
    train, test = task.load("train"), task.load("test")
    assert [ex.input for ex in train] == ["How many people?", "Names in Oslo? Hint: Oslo is a city"]
    assert train[1].output == "SELECT name FROM people WHERE city = 'Oslo'"  # one line
    assert test[0].id == "dev-00000" and test[0].meta["difficulty"] == "simple"
    assert test[0].meta[DB_KEY] == str(tmp_path / "dev_databases" / "zoo" / "zoo.sqlite")
    metric = ExecutionMatch(LIMITS)
    assert metric([ex.output for ex in train + test], train + test) == [1.0, 1.0, 1.0]
    assert "CREATE TABLE pets" in task.prompt(train, test[0])


def test_bird_without_its_folder_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(BIRD_ENV, raising=False)
    with pytest.raises(UsageError) as raised:
        plugins.tasks["text2sql-bird"].check()
    message = str(raised.value)
    assert "\n" not in message and f"${BIRD_ENV}" in message and "https://bird-bench.github.io/" in message
    monkeypatch.setenv(BIRD_ENV, str(tmp_path))
    with pytest.raises(UsageError, match=r"no train\.json in \$ICL_BENCH_BIRD="):
        BirdText2SQL().check()
    write_bird(tmp_path)
    (tmp_path / "dev_databases" / "zoo" / "zoo.sqlite").unlink()
    with pytest.raises(UsageError, match=r"1 BIRD database\(s\) missing"):
        BirdText2SQL().check()


def test_plugins_are_registered():
    assert {"text2sql-synthetic", "text2sql-bird"} <= set(plugins.tasks)
    assert "execution-match" in plugins.metrics and "sql-constants" in plugins.paraphrasers


def test_synthetic_runs_end_to_end(tmp_path):
    done = run_cli(
        "run", "--tasks", "text2sql-synthetic", "--models", "tiny", "--size", "smoke",
        "--store", str(tmp_path / "store"), "--out", str(tmp_path / "suite"),
        cwd=tmp_path, env={STORE_ENV: str(default_root())},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "suite" / "leaderboard.json").read_text())
    assert list(board["tasks"]) == ["text2sql-synthetic"]
    assert board["tasks"]["text2sql-synthetic"]["metric"] == "execution-match"
    records = read_jsonl(tmp_path / "suite" / "results" / "text2sql-synthetic" / "tiny" / "base.jsonl")
    for record in records:  # every example says why it scored as it did
        why = record["reasons"]["execution-match"]
        assert (why == "match") == (record["score"] == 1.0) and "\n" not in why
    assert list((tmp_path / "store" / "text2sql").glob("synthetic-*.sqlite"))  # the database: in --store
