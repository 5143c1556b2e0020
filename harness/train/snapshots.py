"""What a training run leaves on disk: snapshots of the adapter (or full model) every `snapshot_steps`
(`_snapshot_callback`, `save_snapshot`, `snapshots`), the newest complete checkpoint a rerun resumes
from (`latest_checkpoint`), and `load_trained`, the trained model of a `train` result.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from icl_bench.core.store import reading
from icl_bench.models import load

SNAPSHOTS = "snapshots"  # <train output>/snapshots/step-N/: the adapter every `snapshot_steps` (probes)


def _snapshot_callback(folder: Path, every: int, tokenizer=None):
    """A TrainerCallback that saves the model every `every` optimizer steps and at the last step into
    `folder/step-N` (main process only).  Saving reads the weights and draws no random numbers, so a
    run with snapshots trains exactly the weights of one without."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if state.is_world_process_zero and (step % every == 0 or step == state.max_steps):
                save_snapshot(model, folder / f"step-{step}", tokenizer)

    return Snapshots()


def save_snapshot(model, folder: Path, tokenizer=None) -> None:
    """`model.save_pretrained` (a PEFT adapter folder for a PeftModel) into `folder`, through a temporary
    sibling renamed into place, so an interrupted run never leaves half a snapshot; `tokenizer` too
    when given (full fine-tuning: the snapshot must load on its own)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)


def snapshots(output: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every snapshot a `train` result keeps, by step; empty when it keeps none."""
    found = [
        (int(path.name.removeprefix("step-")), path)
        for path in (reading(output) / SNAPSHOTS).glob("step-*")
        if path.is_dir() and path.name.removeprefix("step-").isdigit()
    ]
    return sorted(found)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (trainer_state.json is written last), if any."""
    if not checkpoints.is_dir():
        return None
    done = [
        path
        for path in checkpoints.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda path: int(path.name.split("-")[-1]), default=None)


def load_trained(reference: str, output: Path, precision: str = "auto"):
    """(model, tokenizer) of a `train` result: the base with the adapter merged in, or the full model."""
    output = reading(output)  # checked against its manifest when it is a store artifact
    if (output / "adapter_config.json").is_file():
        from peft import PeftModel

        model, tokenizer = load(reference, precision)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
            model = PeftModel.from_pretrained(model, str(output)).merge_and_unload()
        return model.eval(), tokenizer
    model, tokenizer = load(str(output), precision)
    return model.eval(), tokenizer
