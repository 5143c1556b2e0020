"""What failed paraphrases cost a context artifact, from its summaries (`test/summary.json`,
`train/<regime>.summary.json`): one line per non-zero count, printed on stderr when contexts are built."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from icl_bench.core.progress import console

SUMMARY = "summary.json"  # test/summary.json, train/<regime>.summary.json
SHOWN = 5  # target ids named per line on stderr


def summary_lines(folder: Path) -> list[str]:
    """The non-zero counts of failed paraphrases in a context artifact's summaries, one line each."""
    lines = []
    test = folder / "test" / SUMMARY
    if test.is_file():
        data = json.loads(test.read_text())
        for split, row in data["paraphrase_mode"].items():
            if row["left_out"]:
                lines.append(
                    f"{data['task']}/{split}: {row['left_out']} of {row['targets']} targets left out of the "
                    f"paraphrase mode (no paraphrase but their own input): {_ids(row['left_out_ids'])}"
                )
    for path in sorted((folder / "train").glob(f"*.{SUMMARY}")):
        data = json.loads(path.read_text())
        where, n, ids = f"{data['task']}: {data['regime']}", data["instances"], _ids(data["failed_ids"])
        if data["fell_back"]:
            samplers = ", ".join(data["fell_back_to"])
            lines.append(
                f"{where}: {data['fell_back']} of {n} training instances fell back from a paraphrase to "
                f"{samplers} (no paraphrase but their own input: {ids})"
            )
        if data["left_out"]:
            lines.append(
                f"{where}: {data['left_out']} of {n} training instances left out (no paraphrase: {ids})"
            )
        if data["not_augmented"]:
            lines.append(
                f"{where}: {data['not_augmented']} of {data['targets']} targets add no paraphrase to the "
                f"augmented pool (none but their own input: {ids})"
            )
    return lines


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def report(folders: Sequence[Path]) -> None:
    """Print on stderr what failed paraphrases cost the context artifacts in `folders` (nothing if none)."""
    for folder in folders:
        for line in summary_lines(folder):
            console.print(line, highlight=False, soft_wrap=True)
