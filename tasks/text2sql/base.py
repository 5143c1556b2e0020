"""What every text-to-SQL task shares: the prompt (instructions, the filtered schema of the target's
database, the examples, the question), one-line SQL outputs, and the execution-match metric."""

from __future__ import annotations

from collections.abc import Sequence

from icl_bench import Example, Generation, Task
from icl_bench.tasks.text2sql.execution import DB_KEY
from icl_bench.tasks.text2sql.schema import SchemaFilter, lexical_filter, read_schema

INSTRUCTION = "Write one SQLite query, on a single line, that answers the question about the database below."
PARAPHRASER = "sql-constants"


def one_line(sql: str) -> str:
    return " ".join(sql.split())


class Text2SQLTask(Task):
    metric = "execution-match"
    paraphraser = PARAPHRASER
    generation = Generation(max_new_tokens=128, stop=("\n",))

    def __init__(self, schema_filter: SchemaFilter = lexical_filter):
        self.schema_filter = schema_filter

    def schema_text(self, example: Example) -> str:
        path = example.meta.get(DB_KEY)
        if not path:
            return ""
        return self.schema_filter(read_schema(str(path)), example.input)

    def prompt(self, context: Sequence[Example], target: Example) -> str:
        lines = [INSTRUCTION, "Database schema:", self.schema_text(target)]
        if context:
            lines.append("Examples:")
            lines += [f"{self.render_input(ex)}{self.render_output(ex)}" for ex in context]
            lines.append("Now answer this question.")
        lines.append(self.render_input(target))
        return "\n".join(lines)

    def render_input(self, example: Example) -> str:
        return f"Question: {example.input}\nSQL:"

    def render_output(self, example: Example) -> str:
        return f" {one_line(example.output)}"
