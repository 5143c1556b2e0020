"""One writer per artifact: an exclusive lock file per store key, so two jobs that share a store (two
sweeps at once, a rerun while a job still runs) never compute the same artifact.

`claim(store, stage, inputs)` creates `<root>/locks/<stage>/<key>.lock` with O_EXCL and keeps its
mtime fresh from a heartbeat thread while the block runs; it is removed when the block ends.  A lock
whose holder is gone is stale and taken over: on the same host when the holder's process no longer
exists, on any host when its heartbeat is older than `STALE_S` (a job killed by the scheduler, a node
that died).  A live holder is waited for; the caller then checks the store again.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icl_bench.core.store import Store, name_of

LOCKS = "locks"
HEARTBEAT_S = 10.0
STALE_S = 60.0  # no heartbeat for this long: the holder is gone
POLL_S = 1.0


def holder() -> dict[str, Any]:
    """Who takes a lock: host, process and (under a scheduler) job."""
    job = os.environ.get("SLURM_JOB_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": job, "since": time.time()}


def stale(path: Path, now: float | None = None) -> str | None:
    """Why the lock at `path` is stale (its holder is gone), or None while its holder lives."""
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return "released"
    except (OSError, ValueError):
        return "unreadable"  # a holder killed while writing it
    if held.get("host") == socket.gethostname() and not _alive(held.get("pid")):
        return f"process {held.get('pid')} is gone"
    if age > STALE_S:
        return f"no heartbeat for {age:.0f} s"
    return None


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


def _take(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(holder(), file)
    return True


def _beat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(path)
        except OSError:
            return


def _break(path: Path, why: str) -> None:
    """Move a stale lock aside, atomically: of several waiters that found it stale one moves it; a
    fresh lock moved by mistake (taken in between) is put back."""
    try:
        seen = path.stat().st_ino
        aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.stat().st_ino != seen or stale(aside) is None:
        os.rename(aside, path)
        return
    print(f"lock {name_of(path)}: stale ({why}); taking it over", file=sys.stderr)
    aside.unlink(missing_ok=True)


@contextmanager
def claim(store: Store, stage: str, inputs: Mapping[str, Any]) -> Iterator[None]:
    """Hold the lock of the artifact `stage`/`inputs` for the block, waiting for a live holder and
    taking over a stale one.  Check `store.has` again inside the block: the holder may have made it."""
    key = store.folder(stage, inputs).name
    path = store.root / LOCKS / stage / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    said = False
    while not _take(path):
        why = stale(path)
        if why is not None:
            _break(path, why)
            continue
        if not said:
            print(f"waiting for {name_of(path)}: another job is making {stage} {key}", file=sys.stderr)
            said = True
        time.sleep(POLL_S)
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(path, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        path.unlink(missing_ok=True)
