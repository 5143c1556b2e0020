"""Run one untrusted SQL statement on a SQLite database, safely.  Standard library only: a worker
process runs this file as a script (`python -I sandbox.py`), so it imports nothing of the harness.

Each query runs in the worker on a fresh connection opened read-only (URI `mode=ro`) with
`PRAGMA query_only`, an authorizer that allows reading only (no writes, ATTACH/DETACH, transactions,
PRAGMA writes, `load_extension` or `printf`), extension loading off, a wall-clock deadline checked by a
progress handler, a row limit (rows fetched in batches, cut at `rows` + 1), and memory limits:
`setlimit` caps on string/blob and SQL length, a bounded page cache, in-memory temp storage under
`PRAGMA hard_heap_limit` and the worker's address-space limit (RLIMIT_AS).  The parent kills and
restarts the worker when an answer is `grace` seconds late (one SQLite function call that runs long
between progress checks) or the worker dies, so no query can hang, crash or bloat the run.
"""

from __future__ import annotations

import atexit
import os
import pickle
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

READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
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
    cache_kib: int = 16_384
    heap_bytes: int = 1 << 30  # SQLite's heap in the worker
    address_bytes: int = 4 << 30  # the worker's address space
    grace: float = 2.0  # seconds past `seconds` before the worker is killed
    check_every: int = 1_000  # VM instructions between deadline checks


@dataclass(frozen=True)
class Result:
    rows: list[tuple[Any, ...]] | None = None
    reason: str | None = None  # why there are no rows

    @property
    def ok(self) -> bool:
        return self.reason is None


def _uri(path: str | Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def open_readonly(path: str | Path, limits: Limits = Limits()) -> sqlite3.Connection:
    """A read-only connection with the memory caps set (no authorizer or deadline: see `run`)."""
    if not Path(path).is_file():  # mode=ro never creates a file, but say so plainly
        raise FileNotFoundError(f"no database file {path}")
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
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in READ_PRAGMAS:
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


def run_inline(path: str | Path, sql: str, limits: Limits = Limits()) -> Result:
    """Execute one untrusted statement in this process (the worker's half of `run`)."""
    if not sql.strip():
        return Result(reason="empty query")
    try:
        conn = open_readonly(path, limits)
    except (OSError, sqlite3.Error) as error:
        return Result(reason=f"cannot open database: {error}")
    guard = _Guard(limits)
    try:
        conn.set_authorizer(guard.authorize)
        guard.deadline = time.monotonic() + limits.seconds
        conn.set_progress_handler(guard.progress, limits.check_every)
        cursor = conn.execute(sql)
        rows: list[tuple[Any, ...]] = []
        while len(rows) <= limits.rows:
            batch = cursor.fetchmany(min(1_000, limits.rows + 1 - len(rows)))
            if not batch:
                break
            rows.extend(batch)
        if len(rows) > limits.rows:
            return Result(reason=f"too many rows (over {limits.rows})")
        return Result(rows=rows)
    except sqlite3.Warning as error:  # e.g. "You can only execute one statement at a time."
        return Result(reason=f"error: {error}")
    except sqlite3.Error as error:
        return Result(reason=_reason(error, guard, limits))
    except (MemoryError, OverflowError, ValueError) as error:
        return Result(reason=f"memory limit: {type(error).__name__}")
    finally:
        conn.set_progress_handler(None, 0)
        conn.close()


def _reason(error: sqlite3.Error, guard: _Guard, limits: Limits) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if guard.timed_out:
        return f"time limit ({limits.seconds:g} s)"
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
        try:
            result = run_inline(path, sql, Limits(**fields))
            answer: tuple = (result.rows, result.reason)
            _send(stdout, answer)
        except MemoryError:
            _send(stdout, (None, "memory limit: the worker ran out of address space"))


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
            self._read(time.monotonic() + 60)  # "ready"
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        self.process = None

    def _read_exactly(self, size: int, deadline: float) -> bytes:
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
        return bytes(data)

    def _read(self, deadline: float) -> Any:
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        return pickle.loads(self._read_exactly(size, deadline))

    def run(self, path: str | Path, sql: str, limits: Limits) -> Result:
        with self.lock:
            try:
                process = self.start(limits)
                assert process.stdin is not None
                _send(process.stdin, (str(path), sql, {f: getattr(limits, f) for f in FIELDS}))
                rows, reason = self._read(time.monotonic() + limits.seconds + limits.grace)
            except TimeoutError:
                self.stop()
                return Result(reason=f"time limit ({limits.seconds:g} s; the worker was killed)")
            except (EOFError, OSError, pickle.UnpicklingError):
                code = self.process.poll() if self.process else None
                self.stop()
                return Result(reason=f"the query's worker died (exit status {code})")
        return Result(rows=rows, reason=reason)


FIELDS = tuple(Limits.__dataclass_fields__)
WORKER = Worker()
atexit.register(WORKER.stop)


def run(path: str | Path, sql: str, limits: Limits = Limits()) -> Result:
    """Execute one untrusted statement on the database at `path` in the worker process; never raises,
    never writes, returns within `limits.seconds + limits.grace` seconds (plus a first start-up)."""
    if not sql.strip():
        return Result(reason="empty query")
    return WORKER.run(path, sql, limits)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
