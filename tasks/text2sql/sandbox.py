"""Run one untrusted SQL statement on a SQLite database, safely.  Standard library only: a worker
process runs this file as a script (`python -I sandbox.py`), so it imports nothing of the harness.

Each query runs in the worker on a fresh connection opened read-only and immutable (URI
`mode=ro&immutable=1`: no lock, journal, `-wal` or `-shm` file is ever created) with `PRAGMA query_only`,
an authorizer that allows reading only (no writes, ATTACH/DETACH, transactions, pragmas other than the
reads in READ_PRAGMAS/VALUE_PRAGMAS, `load_extension` or `printf`), extension loading off, a wall-clock
deadline checked by a progress handler, a row limit (cut at `rows` + 1), a result-size limit
(`result_bytes`, on the rows' memory as they are fetched and on the message that carries them, so no
more than that reaches the parent or unpacks there), and memory limits: `setlimit` caps on string/blob
and SQL length, a bounded page cache, in-memory temp storage under `PRAGMA hard_heap_limit` and the worker's
address-space limit (RLIMIT_AS).  The read-only table-valued functions (json_each, json_tree, dbstat,
the pragma_* tables) are constructed before the authorizer is set: SQLite 3.40 reports constructing one
to the authorizer as an UPDATE of sqlite_master (a parse that is never run), which the authorizer denies.
The parent kills and restarts the worker when an answer is `grace` seconds late (one SQLite function
call that runs long between progress checks), larger than `result_bytes`, or the worker dies, so no
query can hang, crash or bloat the run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import re
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pragmas whose argument names what to describe: reads with or without it (PRAGMA table_info(t),
# SELECT * FROM pragma_table_info('t'))
READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
     "foreign_key_list"}
)  # fmt: skip
# pragmas that read a value without an argument and set it with one: allowed without it only
VALUE_PRAGMAS = frozenset(
    {"user_version", "application_id", "schema_version", "encoding", "page_size", "page_count",
     "freelist_count"}
)  # fmt: skip
# the read-only table-valued functions (eponymous virtual tables) built before the authorizer is set;
# pragma_<name> for any pragma the query names is built too, so the authorizer judges that pragma
TABLE_FUNCTIONS = (
    "json_each",
    "json_tree",
    "dbstat",
    *(f"pragma_{name}" for name in sorted(READ_PRAGMAS | VALUE_PRAGMAS)),
)
PRAGMA_TABLE = re.compile(r"pragma_\w+", re.IGNORECASE)
NAMED_PRAGMA_TABLES = 8  # at most this many more are built (a query naming thousands costs no time)
REASON_CHARS = 300  # a reason is one line of at most this many characters
# printf/format: one call can spin for seconds between progress checks (printf('%.*c', 2e9, 'x'))
DENIED_FUNCTIONS = frozenset(
    {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "printf", "format"}
)
ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT: "select",
    sqlite3.SQLITE_READ: "read",
    sqlite3.SQLITE_FUNCTION: "function",
    sqlite3.SQLITE_PRAGMA: "pragma",
    getattr(sqlite3, "SQLITE_RECURSIVE", 33): "recursive",
}
# sqlite3.h's authorizer action codes 1..33, for reasons
AUTHORIZER_ACTIONS = (
    "CREATE_INDEX",
    "CREATE_TABLE",
    "CREATE_TEMP_INDEX",
    "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW",
    "CREATE_TRIGGER",
    "CREATE_VIEW",
    "DELETE",
    "DROP_INDEX",
    "DROP_TABLE",
    "DROP_TEMP_INDEX",
    "DROP_TEMP_TABLE",
    "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW",
    "DROP_TRIGGER",
    "DROP_VIEW",
    "INSERT",
    "PRAGMA",
    "READ",
    "SELECT",
    "TRANSACTION",
    "UPDATE",
    "ATTACH",
    "DETACH",
    "ALTER_TABLE",
    "REINDEX",
    "ANALYZE",
    "CREATE_VTABLE",
    "DROP_VTABLE",
    "FUNCTION",
    "SAVEPOINT",
    "RECURSIVE",
)
ACTION_NAMES = {code: name for code, name in enumerate(AUTHORIZER_ACTIONS, start=1)}


@dataclass(frozen=True)
class Limits:
    """Per-query limits; the memory ones are the worker's (a change starts a new worker)."""

    seconds: float = 2.0
    rows: int = 10_000
    value_bytes: int = 10_000_000  # longest string or blob a query may build
    sql_bytes: int = 100_000
    result_bytes: int = 16 << 20  # the most one result may take: its message, its rows in memory
    cache_kib: int = 16_384
    heap_bytes: int = 1 << 30  # SQLite's heap in the worker
    address_bytes: int = 4 << 30  # the worker's address space
    grace: float = 2.0  # seconds past `seconds` before the worker is killed
    check_every: int = 1_000  # VM instructions between deadline checks


@dataclass(frozen=True)
class Result:
    rows: list[tuple[Any, ...]] | None = None
    reason: str | None = None  # why there are no rows
    size: int = 0  # bytes the parent received from the worker for this answer

    @property
    def ok(self) -> bool:
        return self.reason is None


def _uri(path: str | Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"


def open_readonly(path: str | Path, limits: Limits = Limits()) -> sqlite3.Connection:
    """A read-only, immutable connection with the memory caps set (no authorizer or deadline: see
    `run`).  Immutable: SQLite never locks the file nor creates a journal, `-wal` or `-shm` beside it,
    and ignores any `-wal`, so a database whose `-wal` holds changes is refused rather than misread."""
    if not Path(path).is_file():  # mode=ro never creates a file, but say so plainly
        raise FileNotFoundError(f"no database file {path}")
    wal = Path(f"{path}-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise OSError(
            f"{wal} holds changes not yet in the database file; checkpoint it first: "
            f"sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'"
        )
    conn = sqlite3.connect(_uri(path), uri=True, isolation_level=None, check_same_thread=False)
    if hasattr(conn, "enable_load_extension"):
        conn.enable_load_extension(False)
    conn.execute("PRAGMA query_only = ON")
    conn.execute(f"PRAGMA cache_size = -{int(limits.cache_kib)}")
    conn.execute("PRAGMA temp_store = MEMORY")  # no temp files: sorts count against the heap limit
    if hasattr(conn, "setlimit"):
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, limits.sql_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    return conn


class _Guard:
    """The authorizer and progress handler of one query; remembers why it stopped the query."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.denied: str | None = None
        self.timed_out = False
        self.deadline = 0.0

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: Any, _trigger: Any) -> int:
        if action not in ALLOWED_ACTIONS:
            return self._deny(f"{ACTION_NAMES.get(action, action)} {arg1 or ''}".strip())
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            return self._deny(f"function {arg2}")
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in READ_PRAGMAS or (name in VALUE_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
            kind = "PRAGMA write" if arg2 is not None else "PRAGMA"
            return self._deny(f"{kind} {arg1}")
        return sqlite3.SQLITE_OK

    def _deny(self, what: str) -> int:
        self.denied = self.denied or what
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1
        return 0


def utf8_problem(sql: str) -> str | None:
    """Why `sql` cannot be sent to SQLite as UTF-8 (a lone surrogate), or None."""
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"invalid UTF-8 in query (unpaired surrogate at character {error.start})"
    return None


def build_table_functions(conn: sqlite3.Connection, sql: str) -> None:
    """Construct the allowed table-valued functions and any pragma_* table `sql` names, by preparing
    (EXPLAIN, never running) a read of them all (about 1 ms), or of each where one is missing."""
    named = {m.group().lower() for m in PRAGMA_TABLE.finditer(sql)} - set(TABLE_FUNCTIONS)
    names = TABLE_FUNCTIONS + tuple(sorted(named)[:NAMED_PRAGMA_TABLES])
    try:
        conn.execute("EXPLAIN SELECT 1 FROM " + ", ".join(f'"{name}"' for name in names))
    except sqlite3.Error:  # one this SQLite lacks (e.g. dbstat), a misspelt pragma, over 64 tables
        for name in names:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f'EXPLAIN SELECT 1 FROM "{name}"')


def footprint(row: tuple[Any, ...]) -> int:
    """The bytes `row` takes in the parent once unpickled (CPython's sizes; the worker runs the same
    interpreter): the tuple, its values and its slot in the list of rows.  Shared objects (None, small
    ints) count each time, so this bounds the memory from above."""
    return 8 + sys.getsizeof(row) + sum(map(sys.getsizeof, row))


def run_inline(path: str | Path, sql: str, limits: Limits = Limits()) -> Result:
    """Execute one untrusted statement in this process (the worker's half of `run`)."""
    if not sql.strip():
        return Result(reason="empty query")
    if problem := utf8_problem(sql):
        return Result(reason=problem)
    try:
        conn = open_readonly(path, limits)
    except (OSError, sqlite3.Error) as error:
        return Result(reason=f"cannot open database: {error}")
    guard = _Guard(limits)
    try:
        build_table_functions(conn, sql)
        conn.set_authorizer(guard.authorize)
        guard.deadline = time.monotonic() + limits.seconds
        conn.set_progress_handler(guard.progress, limits.check_every)
        rows: list[tuple[Any, ...]] = []
        size = 0
        for row in conn.execute(sql):
            rows.append(row)
            if len(rows) > limits.rows:
                return Result(reason=f"too many rows (over {limits.rows})")
            size += footprint(row)
            if size > limits.result_bytes:
                return Result(reason=too_large(limits))
        return Result(rows=rows)
    except sqlite3.Warning as error:  # e.g. "You can only execute one statement at a time."
        return Result(reason=f"error: {error}")
    except sqlite3.Error as error:
        return Result(reason=_reason(error, guard, limits))
    except MemoryError:
        return Result(reason="memory limit: MemoryError")
    except (OverflowError, ValueError) as error:  # e.g. "the query contains a null character"
        return Result(reason=f"error: {error}")
    finally:
        conn.set_progress_handler(None, 0)
        conn.close()


def too_large(limits: Limits) -> str:
    return f"result too large: over {limits.result_bytes} bytes"


def _reason(error: sqlite3.Error, guard: _Guard, limits: Limits) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if guard.timed_out:
        return f"time limit ({limits.seconds:g} s)"
    if guard.denied and text.startswith("vtable constructor failed: "):  # not one TABLE_FUNCTIONS has
        return f"denied: virtual table {text.split(': ', 1)[1]}"
    if guard.denied:
        return f"denied: {guard.denied}"
    lowered = text.lower()
    if "not authorized" in lowered:
        return "denied: not authorized"
    if "readonly" in lowered or "read-only" in lowered or "query_only" in lowered:
        return f"denied: {text}"
    if "too big" in lowered or "out of memory" in lowered or isinstance(error, sqlite3.DataError):
        return f"memory limit: {text}"
    if "syntax error" in lowered or "incomplete input" in lowered or "unrecognized token" in lowered:
        return f"syntax error: {text}"
    return f"error: {text}"


# --- the worker process and its client -------------------------------------------------------------

HEADER = struct.Struct("!Q")
MESSAGE_SLACK = 4_096  # room for a reason (at most REASON_CHARS characters) when result_bytes is tiny


class TooLarge(Exception):
    """The worker announced an answer larger than the parent accepts."""


def _send(stream, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> Any:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    return pickle.loads(stream.read(HEADER.unpack(header)[0]))


def serve(heap_bytes: int, address_bytes: int) -> None:
    """The worker: answer (path, sql, limits fields) with (rows, reason) until stdin closes."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (address_bytes, address_bytes))
    except (ImportError, ValueError, OSError):  # not POSIX, or a lower hard limit already: keep it
        pass
    sqlite3.connect(":memory:").execute(f"PRAGMA hard_heap_limit = {int(heap_bytes)}")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _send(stdout, "ready")
    while True:
        try:
            path, sql, fields = _receive(stdin)
        except EOFError:
            return
        limits = Limits(**fields)
        try:
            result = run_inline(path, sql, limits)
            reason = None if result.reason is None else result.reason.splitlines()[0][:REASON_CHARS]
            data = pickle.dumps((result.rows, reason), protocol=pickle.HIGHEST_PROTOCOL)
            del result
            if len(data) > limits.result_bytes:
                data = pickle.dumps((None, too_large(limits)))
        except MemoryError:
            data = pickle.dumps((None, "memory limit: the worker ran out of address space"))
        stdout.write(HEADER.pack(len(data)) + data)
        stdout.flush()


class Worker:
    """One worker process, started on first use and restarted after a kill or a crash."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.memory: tuple[int, int] | None = None
        self.lock = threading.Lock()

    def start(self, limits: Limits) -> subprocess.Popen:
        memory = (limits.heap_bytes, limits.address_bytes)
        if self.process is not None and (self.memory != memory or self.process.poll() is not None):
            self.stop()
        if self.process is None:
            command = [sys.executable, "-I", os.path.abspath(__file__), str(memory[0]), str(memory[1])]
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.memory = memory
            self._read(time.monotonic() + 60, 64)  # "ready"
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        self.process = None

    def _read_exactly(self, size: int, deadline: float) -> bytearray:
        assert self.process is not None and self.process.stdout is not None
        fd, data = self.process.stdout.fileno(), bytearray()
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(size - len(data), 1 << 20))
            if not chunk:
                raise EOFError
            data += chunk
        return data  # no copy: pickle reads a bytearray

    def _read(self, deadline: float, most: int) -> tuple[Any, int]:
        """The worker's next answer and its size; TooLarge, before reading it, when over `most`."""
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        if size > most:
            raise TooLarge(size)
        return pickle.loads(self._read_exactly(size, deadline)), size

    def run(self, path: str | Path, sql: str, limits: Limits) -> Result:
        with self.lock:
            try:
                process = self.start(limits)
                assert process.stdin is not None
                _send(process.stdin, (str(path), sql, {f: getattr(limits, f) for f in FIELDS}))
                most = limits.result_bytes + MESSAGE_SLACK
                (rows, reason), size = self._read(time.monotonic() + limits.seconds + limits.grace, most)
            except TooLarge as error:  # the worker never sends one: a guard, not a path
                self.stop()
                return Result(reason=f"{too_large(limits)} (the worker sent {error.args[0]}; killed)")
            except TimeoutError:
                self.stop()
                return Result(reason=f"time limit ({limits.seconds:g} s; the worker was killed)")
            except (EOFError, OSError, pickle.UnpicklingError):
                code = self.process.poll() if self.process else None
                self.stop()
                return Result(reason=f"the query's worker died (exit status {code})")
        return Result(rows=rows, reason=reason, size=size)


FIELDS = tuple(Limits.__dataclass_fields__)
WORKER = Worker()
atexit.register(WORKER.stop)


def run(path: str | Path, sql: str, limits: Limits = Limits()) -> Result:
    """Execute one untrusted statement on the database at `path` in the worker process; never raises,
    never writes, returns within `limits.seconds + limits.grace` seconds (plus a first start-up)."""
    if not sql.strip():
        return Result(reason="empty query")
    if problem := utf8_problem(sql):  # pickle would send it, SQLite could not take it
        return Result(reason=problem)
    return WORKER.run(path, sql, limits)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
