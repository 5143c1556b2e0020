"""Shared fixtures: a generated-text task with a cheap embedding, its pool and a rank_bm25 reference."""

from __future__ import annotations

import os

from icl_bench.core.numerics import DEFAULT, PROFILES, resolve

# the default numerics, before any test loads torch (as `main` does)
os.environ.update(PROFILES[resolve(DEFAULT)])

import pytest
from helpers import K1, B, WordShuffle, WordsTask, build_words_task
from rank_bm25 import BM25Okapi

from icl_bench import hookimpl
from icl_bench.contexts.build import ContextConfig
from icl_bench.contexts.pool import Pool
from icl_bench.core import plugins


@pytest.fixture(autouse=True)
def restored_environment():
    """`cli.main` in-process sets $ICL_BENCH_STORE (`Store.activate`) and data variables: undo them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def offline_hub(monkeypatch):
    """No hub and no local copies: `datasets` fails at once instead of waiting on network timeouts."""
    import datasets.config
    import huggingface_hub.constants

    from icl_bench.core.hub import DATASETS_ENV

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at import: patch the imported modules too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv(DATASETS_ENV, raising=False)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(reference, spec) of the harness's own `tiny` model, built once per session."""
    from icl_bench.core.store import Store
    from icl_bench.models import materialize, resolve

    spec = resolve("tiny")
    return materialize(spec, Store(tmp_path_factory.mktemp("tiny-store"))), spec


@pytest.fixture(scope="session")
def words_task() -> WordsTask:
    return build_words_task()


@pytest.fixture(scope="session")
def words_paraphraser(words_task) -> WordShuffle:
    return WordShuffle(words_task.paraphraser)


@pytest.fixture(scope="session")
def words_pool(words_task, words_paraphraser) -> Pool:
    return Pool(words_task, words_task.load("train"), words_paraphraser)


@pytest.fixture(scope="session")
def reference(words_pool) -> BM25Okapi:
    """rank_bm25's Okapi BM25 over the same tokenised pool: the independent reference."""
    return BM25Okapi([words_pool.task.bm25_tokens(ex.input) for ex in words_pool.examples], k1=K1, b=B)


@pytest.fixture
def config() -> ContextConfig:
    return ContextConfig(k=4, seed=3)


class _WordsPlugin:
    def __init__(self, task: WordsTask, paraphraser: WordShuffle):
        self.task, self.paraphraser = task, paraphraser

    @hookimpl
    def register_tasks(self, register):
        register(self.task)

    @hookimpl
    def register_paraphrasers(self, register):
        register(self.paraphraser)


@pytest.fixture
def registered_words(words_task, words_paraphraser):
    """The words task and its paraphraser registered with the real plugin manager for one test."""
    assert "synthetic-alignment" in plugins.tasks  # built-ins and entry points load first
    plugins.pm.register(_WordsPlugin(words_task, words_paraphraser), name="tests-words")
    plugins.refresh()
    try:
        yield words_task
    finally:
        plugins.pm.unregister(name="tests-words")
        plugins.refresh()


def pytest_configure(config):
    config.addinivalue_line("markers", "deepspeed: trains under DeepSpeed on CPU (skip: -m 'not deepspeed')")
    config.addinivalue_line("markers", "slow: minutes of installs or training; run with `pytest -m slow`")
    config.addinivalue_line("markers", "slurm: needs a cluster (tests/slurm/cluster.sh up); else skipped")
