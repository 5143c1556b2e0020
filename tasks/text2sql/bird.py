"""`text2sql-bird`: BIRD (https://bird-bench.github.io/) train as the pool, dev as the test split, read
from a local folder in the official layout named by `--data-dir` or `$ICL_BENCH_BIRD`:

    train.json  train_databases/<db_id>/<db_id>.sqlite  dev.json  dev_databases/<db_id>/<db_id>.sqlite

(the unpacked archives' `train/` and `dev/` subfolders are found too).  A question's evidence, when given,
is appended to its input as a hint."""

from __future__ import annotations

import json
import os
from pathlib import Path

from icl_bench import Example
from icl_bench.errors import UsageError, unknown
from icl_bench.tasks.text2sql.base import Text2SQLTask, one_line
from icl_bench.tasks.text2sql.execution import DB_KEY
from icl_bench.validate import Rows

BIRD_ENV = "ICL_BENCH_BIRD"
WHERE = "download BIRD's train and dev sets from https://bird-bench.github.io/ and unpack them there"
FILES = {"train": "train", "test": "dev"}  # our split -> BIRD's
ROW = 'a list of {"question_id", "db_id", "question", "evidence", "SQL"}'


class BirdText2SQL(Text2SQLTask):
    name = "text2sql-bird"
    description = "BIRD text-to-SQL (local folder, $ICL_BENCH_BIRD): train pool, dev test; execution match"
    data_env = BIRD_ENV

    def root(self) -> Path:
        value = os.environ.get(BIRD_ENV)
        if not value:
            raise UsageError(f"text2sql-bird needs BIRD's folder (--data-dir DIR or ${BIRD_ENV}); {WHERE}")
        return Path(value)

    def part(self, split: str) -> Path:
        """The folder holding `<part>.json` and `<part>_databases/` for a split."""
        root, name = self.root(), FILES[split]
        for folder in (root, root / name):
            if (folder / f"{name}.json").is_file():
                return folder
        raise UsageError(f"no {name}.json in ${BIRD_ENV}={root} (nor in {root / name}); {WHERE}")

    def check(self) -> None:
        for split in self.splits:
            examples = self.load(split)
            missing = sorted({ex.meta[DB_KEY] for ex in examples if not Path(ex.meta[DB_KEY]).is_file()})
            if missing:
                raise UsageError(
                    f"{len(missing)} BIRD database(s) missing under ${BIRD_ENV}, e.g. {missing[0]}; {WHERE}"
                )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._loaded: dict[str, tuple[Example, ...]] = {}

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise unknown("split", split, self.splits)
        if split not in self._loaded:
            folder, name = self.part(split), FILES[split]
            try:
                rows = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise UsageError(f"cannot read {folder / f'{name}.json'} ({error}); {WHERE}") from None
            layout = Rows(folder / f"{name}.json", "BIRD's layout", ROW, WHERE)
            examples = []
            for i, row in enumerate(layout.of(rows)):
                db = layout.field(i, row, "db_id")
                question = layout.field(i, row, "question").strip()
                evidence = (layout.field(i, row, "evidence", required=False) or "").strip()
                if evidence:
                    question += f" Hint: {evidence}"
                sql = one_line(layout.field(i, row, "SQL|query"))
                meta = {DB_KEY: str(folder / f"{name}_databases" / db / f"{db}.sqlite"), "db_id": db}
                if "difficulty" in row:
                    meta["difficulty"] = row["difficulty"]
                number = row.get("question_id", i)
                examples.append(
                    Example(
                        f"{name}-{number:05d}" if isinstance(number, int) else f"{name}-{number}",
                        question,
                        sql,
                        meta,
                    )
                )
            if not examples:
                raise layout.fail("holds no rows")
            self._loaded[split] = tuple(examples)
        return list(self._loaded[split])
