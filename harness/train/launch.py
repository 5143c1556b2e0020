"""Training jobs for a launcher: `write_job` puts a `train` call on disk, `run_job` runs it under the
`deepspeed` (or `torchrun`) launcher, which starts this module once per device:

    deepspeed --num_gpus 2 --module icl_bench.train.launch --job JOB.json

A worker's error comes back to `run_job` as one line (UsageError and TrainingDiverged keep their type).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl, write_json, write_jsonl
from icl_bench.core.validate import is_int
from icl_bench.models import resolve
from icl_bench.train.config import TrainConfig, TrainingDiverged
from icl_bench.train.deepspeed_env import free_port
from icl_bench.train.trainer import LOG, train

LAUNCHERS = ("deepspeed", "torchrun")


def write_job(
    folder: Path,
    *,
    reference: str,
    model: str,
    records: Sequence[Mapping[str, str]],
    config: TrainConfig,
    output: Path,
    checkpoints: Path,
    deepspeed: bool = True,
) -> Path:
    """Write `records.jsonl` and `job.json` into `folder` for `main`; returns the job's path."""
    folder = Path(folder)
    write_jsonl(folder / "records.jsonl", records)
    job = {
        "reference": reference,
        "model": model,
        "records_path": str((folder / "records.jsonl").resolve()),
        "config": asdict(config),
        "output": str(Path(output).resolve()),
        "checkpoints": str(Path(checkpoints).resolve()),
        "deepspeed": deepspeed,
    }
    write_json(folder / "job.json", job)
    return folder / "job.json"


def launch_command(
    job: Path,
    *,
    num_gpus: int | None = None,
    hostfile: Path | None = None,
    launcher: str = "deepspeed",
    master_port: int | None = None,
) -> list[str]:
    """The command that runs `python -m icl_bench.train.launch --job JOB` once per device (on CPU: per
    process).
    deepspeed: `--num_gpus N` (alias `--num_accelerators`) processes per node, over the nodes of
    `--hostfile` when given; torchrun: `--standalone --nproc_per_node N`, one node only."""
    if num_gpus is not None and (not is_int(num_gpus) or num_gpus < 1):
        raise UsageError(f"--num-gpus must be a positive integer, got {num_gpus!r}")
    if launcher == "deepspeed":
        command = [_executable("deepspeed")]
        if hostfile is not None:
            if not Path(hostfile).is_file():
                raise UsageError(f"hostfile {hostfile} does not exist; write lines like `worker-1 slots=8`")
            command += ["--hostfile", str(hostfile)]
        if num_gpus is not None:
            command += ["--num_gpus", str(num_gpus)]
        command += ["--master_port", str(master_port or free_port()), "--module"]
    elif launcher == "torchrun":
        if hostfile is not None:
            raise UsageError("a hostfile needs --launcher deepspeed; torchrun here runs on one node")
        command = [_executable("torchrun"), "--standalone", "--nproc_per_node", str(num_gpus or 1), "-m"]
    else:
        raise UsageError(f"unknown launcher {launcher!r}; known launchers: {', '.join(LAUNCHERS)}")
    return [*command, "icl_bench.train.launch", "--job", str(Path(job).resolve())]


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise UsageError(f"the `{name}` launcher is not installed; pip install deepspeed (torchrun: torch)")
    return found


def run_job(
    job: Path,
    *,
    num_gpus: int | None = None,
    hostfile: Path | None = None,
    launcher: str = "deepspeed",
    env: Mapping[str, str] | None = None,
) -> Path:
    """Run a job under the launcher; its output folder, or the workers' error as one line."""
    job = Path(job)
    output = Path(json.loads(job.read_text())["output"])
    failure = _error_file(job)
    failure.unlink(missing_ok=True)
    command = launch_command(job, num_gpus=num_gpus, hostfile=hostfile, launcher=launcher)
    code = subprocess.run(command, env={**os.environ, **(env or {})}).returncode
    if code == 0 and (output / LOG).is_file():
        return output
    error = json.loads(failure.read_text()) if failure.is_file() else {}
    message = error.get("message") or f"{launcher} exited with status {code}; see its output above"
    kind = {"UsageError": UsageError, "TrainingDiverged": TrainingDiverged}.get(error.get("type"))
    if kind is not None:
        raise kind(message)
    raise RuntimeError(f"training job {job} failed: {message}")


def _error_file(job: Path) -> Path:
    return job.with_suffix(".error.json")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m icl_bench.train.launch --job JOB.json`: one training process (the launcher starts one
    each)."""
    parser = argparse.ArgumentParser(prog="python -m icl_bench.train.launch", description=main.__doc__)
    parser.add_argument("--job", required=True, type=Path, help="job JSON written by write_job")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    try:
        try:
            job = json.loads(args.job.read_text())
            inputs = (job["reference"], resolve(job["model"]), read_jsonl(Path(job["records_path"])))
            config = TrainConfig(**job.get("config", {}))
            folders = (Path(job["output"]), Path(job["checkpoints"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"bad training job {args.job}: {type(error).__name__}: {error}") from None
        train(*inputs, config, *folders, deepspeed=bool(job.get("deepspeed", True)))
    except (UsageError, TrainingDiverged) as error:
        line = str(error).splitlines()[0]
        write_json(_error_file(args.job), {"type": type(error).__name__, "message": line})
        print(f"error: {line}", file=sys.stderr)
        return 1
    except Exception as error:
        line = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        write_json(_error_file(args.job), {"type": "RuntimeError", "message": line})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
