"""A database's schema as CREATE statements, and the lexical filter that keeps what a question mentions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from icl_bench.tasks.text2sql.sandbox import open_readonly

WIDE = 8  # tables with more columns than this keep only the mentioned ones (plus keys)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    key: bool  # primary key or foreign key: always kept
    constraint: str = ""  # "PRIMARY KEY" or "REFERENCES table(column)"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def create(self, columns: tuple[Column, ...] | None = None) -> str:
        cols = ", ".join(
            " ".join(part for part in (quote(c.name), c.type, c.constraint) if part)
            for c in (columns or self.columns)
        )
        return f"CREATE TABLE {quote(self.name)} ({cols});"


Schema = tuple[Table, ...]
SchemaFilter = Callable[[Schema, str], str]  # (schema, question) -> the schema text the prompt shows


def quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=64)
def read_schema(path: str) -> Schema:
    """The tables of the database at `path` (read-only), in name order, without SQLite's own."""
    conn = open_readonly(Path(path))
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        tables = []
        for name in names:
            info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
            foreign = {
                row[3]: f"REFERENCES {quote(row[2])}({quote(row[4])})"
                if row[4]
                else f"REFERENCES {quote(row[2])}"
                for row in conn.execute(f"PRAGMA foreign_key_list({quote(name)})")
            }
            columns = tuple(
                Column(
                    r[1],
                    r[2] or "",
                    bool(r[5]) or r[1] in foreign,
                    "PRIMARY KEY" if r[5] else foreign.get(r[1], ""),
                )
                for r in info
            )
            tables.append(Table(name, columns))
        return tuple(tables)
    finally:
        conn.close()


def words(text: str) -> set[str]:
    """Lowercase words and their singulars; identifiers split at underscores and camel case."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    found = set(re.findall(r"[a-z0-9]+", text.lower()))
    return found | {w[:-1] for w in found if len(w) > 3 and w.endswith("s")}


def mentions(name: str, question: set[str]) -> bool:
    parts = words(name) - {"id"}
    return bool(parts) and parts <= question


def lexical_filter(schema: Schema, question: str) -> str:
    """The tables the question names, with the tables they reference; when it names none, the tables
    with a column it mentions; when none, all.  Of a wide table keep its keys and mentioned columns."""
    asked = words(question)
    kept = [t for t in schema if mentions(t.name, asked)]
    if kept:
        referenced = {
            c.constraint.split()[1].split("(")[0].strip('"').lower()
            for t in kept
            for c in t.columns
            if c.constraint.startswith("REFERENCES ")
        }
        kept += [t for t in schema if t.name.lower() in referenced and t not in kept]
        kept.sort(key=schema.index)
    else:
        kept = [t for t in schema if any(mentions(c.name, asked) for c in t.columns)]
    lines = []
    for table in kept or schema:
        columns = table.columns
        if len(columns) > WIDE:
            columns = tuple(c for c in columns if c.key or mentions(c.name, asked)) or columns
        lines.append(table.create(columns))
    return "\n".join(lines)


def full_schema(schema: Schema, question: str) -> str:
    """No filter: every table and column."""
    return "\n".join(t.create() for t in schema)
