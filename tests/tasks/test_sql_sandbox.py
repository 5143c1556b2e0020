"""The SQL sandbox's bounds on what reaches the parent, the read-only table-valued functions it allows,
immutable reads (no file ever created beside a database, WAL mode included) and invalid UTF-8 queries
(issue 19).  The hostile-write cases are in test_text2sql.py."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import tracemalloc

import pytest

from icl_bench import Example
from icl_bench.tasks.text2sql import sandbox
from icl_bench.tasks.text2sql.execution import DB_KEY, ExecutionMatch, Limits, run
from icl_bench.tasks.text2sql.sandbox import HEADER, Worker, footprint, run_inline

LIMITS = Limits(seconds=5)
ROWS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT {n}) "


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "sandbox.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, tags TEXT);"
        "CREATE INDEX people_name ON people (name);"
        """INSERT INTO people VALUES (1, 'Ada', '["math", "engines"]'), (2, 'Alan', '["logic"]');"""
    )
    conn.commit()
    conn.close()
    return path


def example(db, gold: str) -> Example:
    return Example("e", "q", gold, {DB_KEY: str(db)})


def test_a_result_over_the_cap_is_refused_in_the_worker_and_never_reaches_the_parent(db):
    """The reviewer's case: 40 rows of 9.9 MB, each value within `value_bytes`, 396 MB in all."""
    huge = ROWS.format(n=40) + "SELECT zeroblob(9900000) FROM c"
    run(db, "SELECT 1", LIMITS)  # the worker started outside the trace
    tracemalloc.start()
    try:
        result = run(db, huge, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (
        result.reason
        == f"result too large: over {LIMITS.result_bytes} bytes"
        == "result too large: over 16777216 bytes"
    )
    assert result.size <= 200 and peak < 1 << 20  # the parent got a one-line reason, nothing more
    # many small rows add up the same way: 500 rows of 3 kB against a 1 MiB cap
    small_rows = ROWS.format(n=500) + "SELECT x, zeroblob(3000) FROM c"
    assert run(db, small_rows, Limits(result_bytes=1 << 20)).reason == "result too large: over 1048576 bytes"


def test_the_worker_stops_fetching_at_the_cap_within_its_memory(db):
    """900 rows of 1 MB would exhaust a 512 MiB worker; counted as fetched, they stop at 16 MiB."""
    huge = ROWS.format(n=900) + "SELECT zeroblob(1000000) FROM c"
    result = run(db, huge, Limits(address_bytes=512 << 20, seconds=5))
    assert result.reason == "result too large: over 16777216 bytes"


def test_the_cap_is_exact_on_the_rows_memory_and_on_the_message(db):
    query = ROWS.format(n=200) + "SELECT x, 'name ' || x, x / 3.0, NULL FROM c"
    fits = run(db, query, LIMITS)
    assert fits.rows is not None and len(fits.rows) == 200
    memory = sum(map(footprint, fits.rows))  # what the parent holds: more than the message here
    assert memory > fits.size > 200 * 4
    assert run(db, query, Limits(result_bytes=memory)).rows == fits.rows
    assert (
        run(db, query, Limits(result_bytes=memory - 1)).reason == f"result too large: over {memory - 1} bytes"
    )
    # Latin-1 text takes 1 byte a character in memory, 2 in the message (UTF-8): there the message binds
    text = "SELECT replace(hex(zeroblob(50000)), '0', 'é')"
    latin = run(db, text, LIMITS)
    assert latin.rows is not None and footprint(latin.rows[0]) < 110_000 < 200_000 < latin.size
    assert run(db, text, Limits(result_bytes=latin.size)).rows == latin.rows
    assert run(db, text, Limits(result_bytes=latin.size - 1)).reason == (
        f"result too large: over {latin.size - 1} bytes"
    )


def test_the_parent_refuses_an_answer_over_the_cap_before_reading_it(db):
    """A guard behind the worker's own check: a process announcing 1 TB is killed unread."""
    worker, limits = Worker(), Limits(result_bytes=1000)
    header = HEADER.pack(1 << 40)
    script = f"import sys, time; sys.stdout.buffer.write({header!r}); sys.stdout.flush(); time.sleep(60)"
    liar = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    worker.process, worker.memory = liar, (limits.heap_bytes, limits.address_bytes)
    result = worker.run(db, "SELECT 1", limits)
    assert result.reason == "result too large: over 1000 bytes (the worker sent 1099511627776; killed)"
    assert liar.poll() is not None and worker.process is None
    assert worker.run(db, "SELECT 1", limits).rows == [(1,)]  # a real worker takes over
    worker.stop()


def test_the_cache_of_gold_results_is_bounded(db):
    metric = ExecutionMatch(LIMITS, cache_bytes=20_000)
    golds = [ROWS.format(n=100) + f"SELECT x + {k} FROM c" for k in range(6)]
    for gold in golds:
        assert metric.judge(gold, example(db, gold)).score == 1.0
        assert metric.cached_bytes <= 20_000 or len(metric._gold) == 1
    assert 10_000 < metric.cached_bytes <= 20_000 and 1 < len(metric._gold) < len(golds)
    assert metric.judge(golds[0], example(db, golds[0])).score == 1.0  # run again once dropped


READ_ONLY_FUNCTIONS = [
    ("SELECT value FROM json_each('[1, 2, 3]')", [(1,), (2,), (3,)]),
    ("SELECT p.name, j.value FROM people p, json_each(p.tags) j WHERE p.id = 1 ORDER BY j.value",
     [("Ada", "engines"), ("Ada", "math")]),
    ("SELECT fullkey FROM json_tree('{\"a\": [1]}') WHERE atom IS NOT NULL", [("$.a[0]",)]),
    ("SELECT name FROM pragma_table_info('people') ORDER BY cid", [("id",), ("name",), ("tags",)]),
    ("SELECT name FROM pragma_table_xinfo('people') WHERE cid = 1", [("name",)]),
    ("SELECT name FROM pragma_index_list('people')", [("people_name",)]),
    ("SELECT name FROM pragma_index_info('people_name')", [("name",)]),
    ("SELECT name FROM pragma_table_list WHERE schema = 'main' AND name = 'people'", [("people",)]),
    ("SELECT count(*) > 0 FROM dbstat WHERE name = 'people'", [(1,)]),
    ("SELECT * FROM pragma_user_version", [(0,)]),
    ("PRAGMA user_version", [(0,)]),
    ("PRAGMA table_info = people", [(0, "id", "INTEGER", 0, None, 1), (1, "name", "TEXT", 0, None, 0),
                                    (2, "tags", "TEXT", 0, None, 0)]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "rows"), READ_ONLY_FUNCTIONS)
def test_read_only_table_valued_functions_run(db, sql, rows):
    assert run(db, sql, LIMITS).rows == rows


def test_a_gold_query_with_json_each_scores_its_predictions(db):
    gold = example(db, "SELECT value FROM people, json_each(people.tags) WHERE people.name = 'Ada'")
    metric = ExecutionMatch(LIMITS)
    assert metric.judge('SELECT value FROM json_each(\'["engines", "math"]\')', gold).reason == "match"
    assert metric.judge("SELECT 'math'", gold).reason.startswith("mismatch: ")


def test_a_virtual_table_not_allowed_is_named_as_denied(db):
    available = sqlite3.connect(":memory:")
    try:
        available.execute("SELECT * FROM sqlite_stmt")  # a build option (SQLITE_ENABLE_STMTVTAB)
    except sqlite3.Error:
        pytest.skip("this SQLite has no sqlite_stmt virtual table")
    assert run(db, "SELECT * FROM sqlite_stmt", LIMITS).reason == "denied: virtual table sqlite_stmt"


def make_wal(path) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()  # the last connection checkpoints and removes -wal and -shm


def test_reading_a_wal_database_creates_no_file(tmp_path):
    path = tmp_path / "wal.sqlite"
    make_wal(path)
    assert [p.name for p in tmp_path.iterdir()] == ["wal.sqlite"]
    before = path.read_bytes()
    metric = ExecutionMatch(LIMITS)
    gold = example(path, "SELECT a FROM t")
    assert metric.judge("SELECT * FROM t", gold).reason == "match"
    assert metric.judge("SELECT count(*) FROM dbstat", gold).reason.startswith("mismatch: ")
    assert [p.name for p in tmp_path.iterdir()] == ["wal.sqlite"]  # no -wal, -shm or journal
    assert path.read_bytes() == before


def test_a_wal_file_holding_changes_is_refused_not_misread(tmp_path):
    """Immutable reads ignore a -wal file: while one holds changes, say so instead of scoring stale rows."""
    path = tmp_path / "wal.sqlite"
    make_wal(path)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO t VALUES (2)")
    writer.commit()
    try:
        reason = run(path, "SELECT a FROM t", LIMITS).reason or ""
        assert reason.startswith(f"cannot open database: {path}-wal holds changes not yet in the database")
        assert reason.endswith("'PRAGMA wal_checkpoint(TRUNCATE)'") and "\n" not in reason
    finally:
        writer.close()  # checkpoints
    assert run(path, "SELECT a FROM t", LIMITS).rows == [(1,), (2,)]


def test_invalid_utf8_is_named_as_such(db):
    metric = ExecutionMatch(LIMITS)
    gold = example(db, "SELECT name FROM people")
    bad = "SELECT name FROM people WHERE name = 'Ad\udce1'"  # a byte 0xe1 decoded with surrogateescape
    verdict = metric.judge(bad, gold)
    assert (verdict.score, verdict.reason) == (
        0.0,
        "invalid UTF-8 in query (unpaired surrogate at character 40)",
    )
    assert metric.judge("SELECT name FROM people", example(db, bad)).reason == (
        "gold query failed: invalid UTF-8 in query (unpaired surrogate at character 40)"
    )
    assert run(db, bad, LIMITS).size == 0  # refused before it reaches the worker
    assert run_inline(db, bad, LIMITS).reason == verdict.reason  # and by the worker itself
    assert run(db, "SELECT 1\x00", LIMITS).reason == "error: the query contains a null character"


def test_only_a_few_pragma_tables_a_query_names_are_built(db, monkeypatch):
    """Each is prepared before the deadline starts: a query naming thousands must not buy time."""
    built: list[str] = []

    class Recorded:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def execute(self, sql: str):
            if sql.startswith("EXPLAIN"):
                built.append(sql)
            return self.conn.execute(sql)

        def __getattr__(self, name: str):
            return getattr(self.conn, name)

    opened = sandbox.open_readonly
    monkeypatch.setattr(sandbox, "open_readonly", lambda path, limits: Recorded(opened(path, limits)))
    many = "SELECT 1 FROM pragma_nothing0 -- " + " ".join(f"pragma_nothing{i}" for i in range(5_000))
    assert run_inline(db, many, LIMITS).reason == "error: no such table: pragma_nothing0"
    names = {name for sql in built for name in re.findall(r'"(pragma_nothing\d+)"', sql)}
    assert len(names) == sandbox.NAMED_PRAGMA_TABLES == 8
