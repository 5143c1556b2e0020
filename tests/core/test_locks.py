"""One writer per artifact: the lock excludes a second holder, and a holder that is gone is taken over."""

import json
import multiprocessing
import os
import time

from icl_bench.core import locks
from icl_bench.core.locks import claim, stale
from icl_bench.core.store import Store

INPUTS = {"what": "an artifact"}


def _make(root: str, log: str) -> None:
    """What a job does: claim, check the store, compute (slowly) only when absent."""
    store = Store(root)
    with claim(store, "thing", INPUTS):
        if store.has("thing", INPUTS):
            return
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        with store.writing("thing", INPUTS) as folder:
            (folder / "value.txt").write_text("42")


def test_two_processes_compute_once(tmp_path):
    log = tmp_path / "computed.log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_make, args=(str(tmp_path / "store"), str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(log.read_text().split()) == 1
    assert Store(tmp_path / "store").has("thing", INPUTS)
    assert not list((tmp_path / "store" / locks.LOCKS).rglob("*.lock"))  # released


def _lock_path(store: Store):
    path = store.root / locks.LOCKS / "thing" / f"{store.folder('thing', INPUTS).name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_dead_holder_is_taken_over(tmp_path, capsys):
    store = Store(tmp_path)
    context = multiprocessing.get_context("spawn")
    gone = context.Process(target=time.sleep, args=(0,))
    gone.start()
    gone.join()
    path = _lock_path(store)
    path.write_text(json.dumps({**locks.holder(), "pid": gone.pid}))
    assert "is gone" in stale(path)
    with claim(store, "thing", INPUTS):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "stale (process" in capsys.readouterr().err
    assert not path.exists()


def test_a_silent_holder_elsewhere_is_stale_after_its_heartbeat(tmp_path):
    path = _lock_path(Store(tmp_path))
    path.write_text(json.dumps({**locks.holder(), "host": "another-node", "pid": 1}))
    assert stale(path) is None  # another host: alive while it beats
    old = time.time() - locks.STALE_S - 5
    os.utime(path, (old, old))
    assert "no heartbeat" in stale(path)
    path.write_text("{half a lock")  # fresh: a holder may be writing it (never, with link-on-take)
    assert stale(path) is None
    os.utime(path, (old, old))
    assert "unreadable for" in stale(path)


def test_the_end_of_a_block_never_removes_another_holders_lock(tmp_path):
    store = Store(tmp_path)
    path = _lock_path(store)
    with claim(store, "thing", INPUTS):
        other = {**locks.holder(), "token": "someone-else"}
        path.write_text(json.dumps(other))  # taken over while we held it (e.g. our heartbeat stalled)
    assert json.loads(path.read_text())["token"] == "someone-else"


def test_a_live_lock_moved_by_mistake_is_put_back(tmp_path):
    path = _lock_path(Store(tmp_path))
    path.write_text(json.dumps(locks.holder()))  # this process: alive
    locks._break(path, "judged stale a moment ago")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_live_holder_is_waited_for(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path)
    path = _lock_path(store)
    path.write_text(json.dumps(locks.holder()))  # this process holds it: alive
    monkeypatch.setattr(locks, "POLL_S", 0.05)
    calls = []

    def release(seconds):
        calls.append(seconds)
        if len(calls) == 3:
            path.unlink()

    monkeypatch.setattr(locks.time, "sleep", release)
    with claim(store, "thing", INPUTS):
        pass
    assert len(calls) == 3
    assert "waiting for" in capsys.readouterr().err
