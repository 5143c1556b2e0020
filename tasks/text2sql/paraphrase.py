"""`sql-constants`: the synthetic near neighbour of a text-to-SQL target.  Each literal the gold SQL
compares a column with (`col = 'x'`, `t.col > 5`) and that the question mentions verbatim is replaced, in
both, by another value of that column in the example's database.  y~ is the rewritten SQL (y~ != y*).
Deterministic given the target: the choice is seeded by its id and SQL, not by the caller's rng."""

from __future__ import annotations

import random
import re

from icl_bench import Example, Paraphraser
from icl_bench.tasks.text2sql.execution import DB_KEY, run
from icl_bench.tasks.text2sql.schema import quote, read_schema

IDENT = r"(?:\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|[A-Za-z_]\w*)"
COMPARISON = re.compile(
    rf"(?:(?P<qual>{IDENT})\s*\.\s*)?(?P<col>{IDENT})\s*(?:==|=|!=|<>|>=|<=|>|<|\blike\b)\s*"
    r"(?P<lit>'(?:[^']|'')*'|-?\d+(?:\.\d+)?\b)",
    re.I,
)
KEYWORDS = {"on", "where", "join", "inner", "left", "right", "outer", "cross", "group", "order", "limit",
            "natural", "using", "union", "having", "as", "full", "except", "intersect", "window"}  # fmt: skip
SOURCE = re.compile(
    rf"\b(?:from|join)\s+(?P<table>{IDENT})"
    rf"(?:\s+(?:as\s+)?(?!(?:{'|'.join(sorted(KEYWORDS))})\b)(?P<alias>{IDENT}))?",
    re.I,
)


def bare(identifier: str) -> str:
    return identifier[1:-1] if identifier[:1] in '"`[' else identifier


def sources(sql: str) -> dict[str, str]:
    """Alias or table name (lowercase) -> table name, for every FROM/JOIN source."""
    found: dict[str, str] = {}
    for match in SOURCE.finditer(sql):
        table = bare(match["table"])
        found[table.lower()] = table
        alias = match["alias"]
        if alias and alias.lower() not in KEYWORDS:
            found[bare(alias).lower()] = table
    return found


def literal_value(text: str) -> str | float:
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text) if "." in text else int(text)


def sql_literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value) if isinstance(value, float) else str(value)


def mention(question: str, value: str | float) -> re.Match | None:
    text = value if isinstance(value, str) else str(value)
    return re.search(rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)", question, flags=re.I)


class SqlConstants(Paraphraser):
    name = "sql-constants"
    description = (
        "text-to-SQL: replace the gold SQL's compared constants with other values of the same column in the "
        "database, in the SQL and the question (y~ != y*)"
    )

    def column_values(self, path: str, table: str, column: str) -> list:
        sql = (
            f"SELECT DISTINCT {quote(column)} FROM {quote(table)} WHERE {quote(column)} IS NOT NULL "
            f"ORDER BY 1 LIMIT 500"
        )
        result = run(path, sql)
        return [row[0] for row in result.rows or []]

    def table_of(self, path: str, qualifier: str | None, column: str, sql: str) -> str | None:
        tables = {t.name.lower(): t for t in read_schema(path)}
        known = sources(sql)
        candidates = (
            [known.get(bare(qualifier).lower())] if qualifier else list(dict.fromkeys(known.values()))
        )
        for name in candidates:
            table = tables.get((name or "").lower())
            if table and any(c.name.lower() == bare(column).lower() for c in table.columns):
                return table.name
        return None

    def __call__(self, target: Example, rng: random.Random) -> Example:
        path = target.meta.get(DB_KEY)
        if not path:
            return Example("paraphrase", target.input, target.output, dict(target.meta))
        choose = random.Random(f"sql-constants|{target.id}|{target.output}")
        sql, question = target.output, target.input
        # right to left, so earlier spans keep their positions
        for match in reversed(list(COMPARISON.finditer(sql))):
            if match["col"].lower() in KEYWORDS:
                continue
            old = literal_value(match["lit"])
            spot = mention(question, old)
            table = self.table_of(str(path), match["qual"], match["col"], sql)
            if spot is None or table is None:
                continue
            same_kind = [
                v for v in self.column_values(str(path), table, bare(match["col"]))
                if isinstance(v, str) == isinstance(old, str) and v != old and "\n" not in str(v)
                and mention(question, v) is None
            ]  # fmt: skip
            if not same_kind:
                continue
            new = choose.choice(same_kind)
            start, end = match.span("lit")
            sql = sql[:start] + sql_literal(new) + sql[end:]
            question = question[: spot.start()] + str(new) + question[spot.end() :]
        return Example("paraphrase", question, sql, dict(target.meta))
