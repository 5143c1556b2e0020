"""`text2sql-synthetic`: an offline task generated from a seed.  A small SQLite database (departments,
employees, projects) is written on first load under `$ICL_BENCH_STORE/text2sql/` (or the user cache),
keyed by the seed and `VERSION`; questions and gold SQL come from templates filled with the database's
own values, so examples share a template with other constants (close), another column or aggregate of
the same template (medium), or nothing (far).  `meta["template"]` names the template."""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from icl_bench import Example
from icl_bench.errors import unknown
from icl_bench.store import default_root
from icl_bench.tasks.text2sql.base import Text2SQLTask
from icl_bench.tasks.text2sql.execution import DB_KEY
from icl_bench.tasks.text2sql.sandbox import open_readonly

VERSION = 1
DEPARTMENTS = ["Sales", "Research", "Marketing", "Finance", "Support", "Logistics"]
CITIES = ["Berlin", "Lyon", "Porto", "Oslo", "Dublin"]
TITLES = ["Engineer", "Analyst", "Manager", "Clerk", "Designer"]
FIRST = ["Ada", "Bram", "Cleo", "Dario", "Edda", "Fenn", "Gala", "Hugo", "Ines", "Jory", "Kaia", "Lenz"]
LAST = ["Arden", "Brook", "Calder", "Dune", "Ember", "Frost", "Grove", "Hale", "Irving", "Jatt"]
PROJECTS = ["Alpha", "Beacon", "Comet", "Delta", "Ember", "Falcon", "Garnet", "Harbor", "Iris", "Juniper"]
JOIN = "FROM employees JOIN departments ON employees.department_id = departments.id"


def build_database(path: Path, seed: int) -> None:
    """Write the database for `seed` to `path` (atomically: a temporary file renamed into place)."""
    rng = random.Random(f"text2sql-synthetic|{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        conn.executescript(
            "CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT, city TEXT, budget INTEGER);"
            "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, title TEXT, salary INTEGER, "
            "hire_year INTEGER, department_id INTEGER REFERENCES departments(id));"
            "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT, budget INTEGER, "
            "department_id INTEGER REFERENCES departments(id));"
        )
        conn.executemany(
            "INSERT INTO departments VALUES (?, ?, ?, ?)",
            [
                (i + 1, d, rng.choice(CITIES), rng.randrange(100, 900) * 1000)
                for i, d in enumerate(DEPARTMENTS)
            ],
        )
        names = rng.sample([f"{f} {last}" for f in FIRST for last in LAST], 60)
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i + 1, n, rng.choice(TITLES), rng.randrange(60, 240) * 500, rng.randint(2008, 2023),
                 rng.randint(1, len(DEPARTMENTS)))
                for i, n in enumerate(names)
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO projects VALUES (?, ?, ?, ?)",
            [(i + 1, f"Project {p}", rng.randrange(20, 400) * 1000, rng.randint(1, len(DEPARTMENTS)))
             for i, p in enumerate(PROJECTS)],
        )  # fmt: skip
        conn.commit()
        conn.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclass(frozen=True)
class Pair:
    template: str
    question: str
    sql: str


def pairs(path: Path) -> list[Pair]:
    """Every template filled with every value the database offers for it, in a fixed order."""
    conn = open_readonly(path)
    cities = [r[0] for r in conn.execute("SELECT DISTINCT city FROM departments ORDER BY city")]
    titles = [r[0] for r in conn.execute("SELECT DISTINCT title FROM employees ORDER BY title")]
    salaries = [r[0] for r in conn.execute("SELECT salary FROM employees ORDER BY salary")]
    years = [r[0] for r in conn.execute("SELECT DISTINCT hire_year FROM employees ORDER BY hire_year")]
    budgets = [r[0] for r in conn.execute("SELECT budget FROM projects ORDER BY budget")]
    conn.close()
    out: list[Pair] = []
    for d in DEPARTMENTS:
        where = f"WHERE departments.name = '{d}'"
        out.append(Pair("count-dept", f"How many employees work in the {d} department?",
                        f"SELECT COUNT(*) {JOIN} {where}"))  # fmt: skip
        for word, agg in (("average", "AVG"), ("highest", "MAX"), ("lowest", "MIN")):
            for column, noun in (("salary", "salary"), ("hire_year", "hire year")):
                out.append(Pair("agg-dept", f"What is the {word} {noun} of employees in the {d} department?",
                                f"SELECT {agg}(employees.{column}) {JOIN} {where}"))  # fmt: skip
        for n in (3, 5):
            out.append(Pair(
                "top-dept",
                f"List the names of the {n} best paid employees in the {d} department, highest salary first.",
                f"SELECT employees.name {JOIN} {where} "
                f"ORDER BY employees.salary DESC, employees.id LIMIT {n}",
            ))  # fmt: skip
        out.append(Pair("projects-dept", f"List the projects of the {d} department.",
                        "SELECT projects.name FROM projects JOIN departments ON projects.department_id = "
                        f"departments.id {where}"))  # fmt: skip
    for column, noun, values in (("salary", "salary", salaries), ("hire_year", "hire year", years)):
        for value in (values[len(values) // 4], values[len(values) // 2], values[3 * len(values) // 4]):
            for word, op in (("above", ">"), ("below", "<")):
                out.append(Pair("names-compare", f"List the names of employees with a {noun} {word} {value}.",
                                f"SELECT name FROM employees WHERE {column} {op} {value}"))  # fmt: skip
    for title in titles:
        out.append(Pair("names-title", f"List the names of employees whose title is {title}.",
                        f"SELECT name FROM employees WHERE title = '{title}'"))  # fmt: skip
        for year in years[::4]:
            out.append(Pair(
                "count-title-year", f"How many employees with the title {title} were hired after {year}?",
                f"SELECT COUNT(*) FROM employees WHERE title = '{title}' AND hire_year > {year}",
            ))  # fmt: skip
    for city in cities:
        out.append(Pair("dept-city", f"Which departments are located in {city}?",
                        f"SELECT name FROM departments WHERE city = '{city}'"))  # fmt: skip
        out.append(Pair(
            "count-per-dept", f"How many employees does each department in {city} have?",
            "SELECT departments.name, COUNT(employees.id) FROM departments LEFT JOIN employees ON "
            f"employees.department_id = departments.id WHERE departments.city = '{city}' "
            "GROUP BY departments.name",
        ))  # fmt: skip
    for value in (budgets[2], budgets[5], budgets[7]):
        out.append(Pair("projects-budget", f"Which projects have a budget above {value}?",
                        f"SELECT name FROM projects WHERE budget > {value}"))  # fmt: skip
    return out


class SyntheticText2SQL(Text2SQLTask):
    name = "text2sql-synthetic"
    description = (
        "offline text-to-SQL: a generated SQLite database (departments/employees/projects) and templated "
        "question/SQL pairs; execution match"
    )

    def __init__(self, seed: int = 0, test_fraction: float = 0.25, root: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.test_fraction, self.root = seed, test_fraction, root

    @property
    def database(self) -> Path:
        root = self.root or default_root() / "text2sql"
        path = Path(root) / f"synthetic-seed{self.seed}-v{VERSION}.sqlite"
        if not path.is_file():
            build_database(path, self.seed)
        return path

    @cached_property
    def _splits(self) -> dict[str, tuple[Example, ...]]:
        path = self.database
        examples = [
            Example(f"sql-{i:04d}", p.question, p.sql, {DB_KEY: str(path), "template": p.template})
            for i, p in enumerate(pairs(path))
        ]
        random.Random(f"text2sql-synthetic|{self.seed}|split").shuffle(examples)
        cut = round(len(examples) * self.test_fraction)
        return {"test": tuple(examples[:cut]), "train": tuple(examples[cut:])}

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise unknown("split", split, self.splits)
        self.database  # noqa: B018  (rebuilt if the file was removed since the splits were made)
        return list(self._splits[split])
