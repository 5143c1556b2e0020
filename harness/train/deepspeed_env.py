"""DeepSpeed, the distributed engine of the train stage: `zero_config` writes its ZeRO config, and
`_environment` sets up (and afterwards restores) the process environment a run needs: quiet loading, the
torch extensions cache and, outside a launcher, a one-process group on a `free_port`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icl_bench.train.config import TrainConfig


def zero_config(config: TrainConfig) -> dict[str, Any]:
    """A DeepSpeed ZeRO config; "auto" values are filled in by the Trainer from its arguments.  With
    offload the optimizer is DeepSpeed's CPU AdamW (a torch optimizer cannot step offloaded state)."""
    zero: dict[str, Any] = {"stage": config.zero_stage, "contiguous_gradients": True, "overlap_comm": False}
    if config.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if config.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if config.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    ds: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if config.offload:
        params = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
        ds["optimizer"] = {"type": "AdamW", "params": params}
    return ds


@contextlib.contextmanager
def _environment(deepspeed: bool) -> Iterator[None]:
    """Quiet loading, and for DeepSpeed: torch extensions (compiled ops) cached under the user cache and,
    outside a launcher, a one-process group over localhost (else it tries MPI).  Environment variables
    (also those accelerate sets) are restored afterwards; the group lives on for the next run to reuse."""
    import torch
    from platformdirs import user_cache_dir
    from transformers.utils import logging as hf_logging

    saved = dict(os.environ)
    if deepspeed:
        version = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}"
        cache = Path(user_cache_dir("icl-bench")) / "torch_extensions" / version
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache))
        if "RANK" not in os.environ:
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
            os.environ["MASTER_PORT"] = str(free_port())
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
            warnings.filterwarnings("ignore", message="OMP_NUM_THREADS/MKL_NUM_THREADS unset")
            yield
    finally:
        if deepspeed:  # else a later from_pretrained in this process would still partition for ZeRO-3
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        if bars:
            hf_logging.enable_progress_bar()
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def world() -> tuple[int, int]:
    """(rank, world size) of this process, from torch's environment variables (a launcher's or a
    scheduler's); (0, 1) outside a distributed job."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
