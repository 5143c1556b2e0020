"""Benchmark the portable CPU numerics profile against native, side by side, and show which of its
settings decide the trained weights on this machine.

Each variant is one fresh process (the settings are read when torch loads) running `icl-bench train`
of one regime at the smoke size into its own store; the table gives its wall time, the ratio to
portable, and whether its trained weights are byte-identical to portable's.  A variant flips one
setting to a non-AVX2 value: where the weights change, that setting decides rounding on some CPU kind,
so the profile must pin it.

    python tests/benchmarks/bench_numerics.py                      # smollm2-135m, zero regime
    python tests/benchmarks/bench_numerics.py --model tiny --variants portable,native
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from icl_bench.core.numerics import PROFILES, VARIABLES

PORTABLE = PROFILES["portable"]
VARIANTS: dict[str, dict[str, str]] = {
    "portable": PORTABLE,
    "native": {},
    "threads 1": {**PORTABLE, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "ATen default": {**PORTABLE, "ATEN_CPU_CAPABILITY": "default"},
    "MKL_CBWR COMPATIBLE": {**PORTABLE, "MKL_CBWR": "COMPATIBLE"},
    "MKL SSE4_2": {**PORTABLE, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "oneDNN SSE41": {**PORTABLE, "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def weights_sha256(store: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((store / "train").rglob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def train_once(model: str, regime: str, settings: dict[str, str], root: Path) -> tuple[float, str]:
    """(wall seconds, trained weights' sha256) of one `icl-bench train` under `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | settings | {"HF_HUB_OFFLINE": "1"}
    store = root / "store"
    command = [sys.executable, "-m", "icl_bench.cli", "train", "--numerics", "native", "--models", model]
    command += [
        "--size",
        "smoke",
        "--tasks",
        "synthetic-alignment",
        "--regimes",
        regime,
        "--store",
        str(store),
    ]
    models = Path(os.environ.get("ICL_BENCH_STORE", "")) / "models"
    if models.is_dir():  # reuse the materialised model: only training is timed
        (store).mkdir(parents=True)
        (store / "models").symlink_to(models)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start, weights_sha256(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--regime", default="zero")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    args = parser.parse_args()
    chosen = ["portable"] + [v for v in args.variants.split(",") if v != "portable"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-numerics-") as tmp:
        for i, name in enumerate(chosen):
            rows.append((name, *train_once(args.model, args.regime, VARIANTS[name], Path(tmp) / str(i))))
    base_time, base_weights = rows[0][1], rows[0][2]
    table = Table(title=f"numerics profiles: `icl-bench train` {args.model} {args.regime}, smoke size")
    for column in ("variant", "wall s", "x portable", "weights = portable"):
        table.add_column(column)
    for name, seconds, weights in rows:
        table.add_row(
            name, f"{seconds:.1f}", f"{seconds / base_time:.2f}", "yes" if weights == base_weights else "no"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
