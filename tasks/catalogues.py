"""English -> X string pairs from the gettext catalogues (`django.po`) inside the installed django package,
read at run time: no catalogue text lives in this repository.

Kept: translated singular entries (placeholders such as `%(name)s` as they are, runs of whitespace
collapsed to one space).  Dropped: the header, plural forms, fuzzy and obsolete entries, empty
translations, and every later duplicate of an English source.  Catalogues of django.contrib.admin and
admindocs form the `admin` family, all others (django/conf and the other contrib apps) `core`; a source
in both stays in `core`, so the families never share a source.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from icl_bench.errors import UsageError

ADMIN_APPS = ("admin", "admindocs")


@dataclass(frozen=True)
class Pair:
    source: str
    translation: str
    catalogue: str  # the catalogue's app: "conf", "auth", "admin", ...
    family: str  # "core" or "admin"


def django_root() -> Path:
    spec = importlib.util.find_spec("django")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the django package is not installed; run `pip install django` (icl-bench needs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def catalogue_files(language: str) -> dict[str, Path]:
    """App name -> that app's `django.po` for `language`, core (`conf`) first, then contrib by name."""
    root = django_root()
    found = {"conf": root / "conf" / "locale" / language / "LC_MESSAGES" / "django.po"}
    for po in sorted(root.glob(f"contrib/*/locale/{language}/LC_MESSAGES/django.po")):
        found[po.parents[3].name] = po
    found = {app: path for app, path in found.items() if path.is_file()}
    if "conf" not in found:
        raise UsageError(
            f"django {root} has no catalogue for language {language!r} (conf/locale/{language}/"
            "LC_MESSAGES/django.po); reinstall it (`pip install --force-reinstall django`) or pick another"
        )
    return found


def entries(text: str) -> list[dict[str, str]]:
    """The entries of a .po file: keyword -> unescaped string, plus "flags" (the `#,` line).
    Obsolete entries (`#~`) are skipped like every other comment."""
    found, entry, keyword = [], {}, ""
    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        if not line:
            if entry:
                found.append(entry)
            entry, keyword = {}, ""
        elif line.startswith("#,"):
            entry["flags"] = line[2:]
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[keyword] += ast.literal_eval(line)
        else:
            keyword, _, quoted = line.partition(" ")
            entry[keyword] = ast.literal_eval(quoted)
    return found


def usable(entry: dict[str, str]) -> bool:
    return (
        bool(entry.get("msgid"))
        and "msgid_plural" not in entry
        and "fuzzy" not in entry.get("flags", "")
        and bool(entry.get("msgstr", "").strip())
    )


def pairs(language: str) -> list[Pair]:
    """Every usable pair of `language`'s catalogues, core family first, sources unique."""
    files = catalogue_files(language)
    ordered = sorted(files, key=lambda app: app in ADMIN_APPS)  # stable: core apps keep their order
    seen: set[str] = set()
    found = []
    for app in ordered:
        for entry in entries(files[app].read_text(encoding="utf-8")):
            source = " ".join(entry.get("msgid", "").split())
            if usable(entry) and source not in seen:
                seen.add(source)
                family = "admin" if app in ADMIN_APPS else "core"
                found.append(Pair(source, " ".join(entry["msgstr"].split()), app, family))
    return found
