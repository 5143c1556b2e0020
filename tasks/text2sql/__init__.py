"""Text-to-SQL: `text2sql-synthetic` (offline, generated), `text2sql-bird` (local BIRD folder), the
sandboxed `execution-match` metric and the `sql-constants` paraphraser (issue 9)."""

from __future__ import annotations

from icl_bench import hookimpl
from icl_bench.tasks.text2sql.bird import BirdText2SQL
from icl_bench.tasks.text2sql.execution import ExecutionMatch
from icl_bench.tasks.text2sql.paraphrase import SqlConstants
from icl_bench.tasks.text2sql.synthetic import SyntheticText2SQL


@hookimpl
def register_tasks(register) -> None:
    register(SyntheticText2SQL())
    register(BirdText2SQL())


@hookimpl
def register_metrics(register) -> None:
    register(ExecutionMatch())


@hookimpl
def register_paraphrasers(register) -> None:
    register(SqlConstants())
