"""What an ft-vs-icl run is configured by: the fine-tuned settings it compares (plain FT, layer-causal
FT, and the same clipped) and `AlignmentConfig`, the demonstrations, fine-tuning and bootstrap it uses."""

from __future__ import annotations

from dataclasses import dataclass

FINE_TUNED = {  # setting -> (objective, uses the config's clip)
    "ft": ("causal-lm", False),
    "ft-layer-causal": ("layer-causal", False),
    "ft-layer-causal-clip": ("layer-causal", True),
}
LAYER_ORDER = "sequential"  # in the key of every layer-causal model: the simultaneous ones came before


@dataclass(frozen=True)
class AlignmentConfig:
    """The analysis' choices: k demonstrations (the paper's 32), test examples (None: all), and the
    fine-tuning of Dai et al.: full-rank key/value projections only, SGD (choice: 3 epochs of batches of
    4 at learning rate 0.01); `resamples` bootstrap resamples of the test examples for every interval.

    `clip` is the clipped layer-causal setting's.  The paper clips at 12.0 in l-infinity norm, a value
    for its 1.3B model: here it would act on one layer step of 720, hardly a clip.  Chosen before any
    alignment result was computed, by a rule fixed in advance: run
    the unclipped layer-causal fine-tuning of the default analysis (smollm2-135m, mr-offline, k = 32,
    seed 0), take each layer step's gradient l-infinity norm (`layer_grad_linf` in its train log, 24
    steps x 30 layers) and clip at their median, rounded to two significant digits, so the clip acts on
    about half of the layer steps, those with the largest gradients (the paper clips because the lower
    layers' layer-causal gradients are larger).  Measured: median 0.812 (quartiles 0.575 and 1.17;
    largest 13.4, layer 0 at the first step, the only layer step above the paper's 12.0), so `linf:0.81`,
    which acts on 360 of the 720 layer steps of the unclipped run."""

    k: int = 32
    max_test: int | None = None
    seed: int = 0
    epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 0.01
    optim: str = "sgd"
    adapt: str = "key-value"
    clip: str = "linf:0.81"
    precision: str = "auto"
    max_length: int = 2048
    resamples: int = 1000

    def train_config(self, setting: str):
        from icl_bench.train.config import TrainConfig

        objective, clipped = FINE_TUNED[setting]
        return TrainConfig(
            adapt=self.adapt,
            optim=self.optim,
            objective=objective,
            clip=self.clip if clipped else "none",  # SGD as Dai et al.: no clipping
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            precision=self.precision,
        )
