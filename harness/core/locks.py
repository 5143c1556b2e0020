"""One writer per artifact: an exclusive lock file per store key, so two jobs that share a store (two
sweeps at once, a rerun while a job still runs) never compute the same artifact.

`made(store, stage, inputs, make)` builds an artifact once across every process sharing the store.
`claim(store, stage, inputs)`, the lock it takes, holds `<root>/locks/<stage>/<key>.lock` for the block:
the holder's record (host, process, job, a random token) is written to a file of its own first and
then hard-linked to the lock's name, which fails when the name exists, so a lock is never seen
half-written.  A heartbeat thread keeps its mtime fresh; the block's end removes it only while it
still holds this holder's token.  A lock whose holder is gone is stale and taken over: on the same host
when the holder's process no longer exists, on another host when its heartbeat is older than
`STALE_S` (a job killed by the scheduler, a node that died).  A live holder is waited for; the caller
then checks the store again.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from icl_bench.core.store import Store, name_of

LOCKS = "locks"
HEARTBEAT_S = 10.0
STALE_S = 60.0  # no heartbeat for this long: a holder on another host is gone
POLL_S = 1.0


def holder() -> dict[str, Any]:
    """Who takes a lock: host, process, (under a scheduler) job, and a token no other holder has."""
    found = {"host": socket.gethostname(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID")}
    return {**found, "since": time.time(), "token": uuid.uuid4().hex}


def _read(path: Path) -> tuple[dict[str, Any] | None, float]:
    """The lock's record (None: unreadable) and its age in seconds; FileNotFoundError when absent."""
    age = time.time() - path.stat().st_mtime
    try:
        return json.loads(path.read_text(encoding="utf-8")), age
    except (OSError, ValueError):
        return None, age


def stale(path: Path) -> str | None:
    """Why the lock at `path` is stale (its holder is gone), or None while its holder lives."""
    try:
        held, age = _read(path)
    except FileNotFoundError:
        return "released"
    if held is None:
        return f"unreadable for {age:.0f} s" if age > STALE_S else None
    if held.get("host") == socket.gethostname():
        return None if _alive(held.get("pid")) else f"process {held.get('pid')} is gone"
    return f"no heartbeat for {age:.0f} s" if age > STALE_S else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take(path: Path, record: dict[str, Any]) -> bool:
    """Link a finished record file to the lock's name: False when another holder has it."""
    draft = path.with_name(f".{path.name}.{record['token']}")
    draft.write_text(json.dumps(record), encoding="utf-8")
    try:
        os.link(draft, path)
        return True
    except FileExistsError:
        return False
    finally:
        draft.unlink(missing_ok=True)


def _break(path: Path, why: str) -> None:
    """Move a stale lock aside atomically; of several waiters one moves it.  A lock taken in between
    (another record by the time it was moved) is linked back, never over a newer one."""
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if stale(aside) is None:  # moved a live lock: put it back unless its name is taken again
        with suppress(FileExistsError):
            os.link(aside, path)
    else:
        print(f"lock {name_of(path)}: stale ({why}); taking it over", file=sys.stderr)
    aside.unlink(missing_ok=True)


def _ours(path: Path, token: str) -> bool:
    try:
        held, _ = _read(path)
    except FileNotFoundError:
        return False
    return held is not None and held.get("token") == token


def _beat(path: Path, token: str, stop: threading.Event) -> None:
    """Refresh the lock's mtime until `stop`, through passing errors (a retry every beat); stop when the
    lock no longer holds our token."""
    while not stop.wait(HEARTBEAT_S):
        try:
            if not _ours(path, token):
                print(f"lock {name_of(path)}: lost to another holder", file=sys.stderr)
                return
            os.utime(path)
        except OSError:
            continue


@contextmanager
def claim(store: Store, stage: str, inputs: Mapping[str, Any]) -> Iterator[None]:
    """Hold the lock of the artifact `stage`/`inputs` for the block, waiting for a live holder and
    taking over a stale one.  Check `store.has` again inside the block: the holder may have made it."""
    key = store.folder(stage, inputs).name
    path = store.root / LOCKS / stage / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    record, said = holder(), False
    while not _take(path, record):
        why = stale(path)
        if why is not None:
            _break(path, why)
            continue
        if not said:
            print(f"waiting for {name_of(path)}: another job is making {stage} {key}", file=sys.stderr)
            said = True
        time.sleep(POLL_S)
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(path, record["token"], stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        if _ours(path, record["token"]):
            path.unlink(missing_ok=True)


def made(store: Store, stage: str, inputs: Mapping[str, Any], make: Callable[[], object]) -> Path:
    """The artifact `stage`/`inputs`, built by `make` once across every process sharing the store:
    reused when it exists, else made under its lock unless the holder made it meanwhile."""
    if not store.has(stage, inputs):
        with claim(store, stage, inputs):
            if not store.has(stage, inputs):
                make()
    return store.folder(stage, inputs)
