"""The README's plugin example, installed as its own distribution, works with the real CLI."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_files() -> dict[str, str]:
    """Code blocks introduced by a line `icl-bench-reverse/<file>`:, keyed by file name."""
    blocks = re.findall(r"`icl-bench-reverse/([\w.]+)`:\n\n```\w+\n(.*?)```", README.read_text(), re.S)
    return dict(blocks)


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "icl_bench.cli", *args], capture_output=True, text=True, env=env
    )


def test_readme_plugin_installs_and_runs(tmp_path):
    files = readme_files()
    assert set(files) == {"pyproject.toml", "icl_bench_reverse.py"}
    project = tmp_path / "icl-bench-reverse"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    site = tmp_path / "site"
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(project),
    ]
    subprocess.run(install, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "ICL_BENCH_STORE": str(tmp_path / "store")}

    listing = json.loads(cli("list", "--json", env=env).stdout)
    assert "reverse" in [t["name"] for t in listing["tasks"]]
    assert "first-k" in [r["name"] for r in listing["regimes"]]

    out = tmp_path / "ctx"
    done = cli("contexts", "--task", "reverse", "--regimes", "first-k,similar", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "test" / "test").iterdir()) == [
        "one-near.jsonl",
        "random.jsonl",
        "similar.jsonl",
    ]
    first = json.loads((out / "train" / "first-k.jsonl").read_text().splitlines()[0])
    assert first["id"] == "train-0" and first["context_ids"] == ["train-1", "train-2", "train-3", "train-4"]

    refused = cli("contexts", "--task", "reverse", "--regimes", "contrastive", "--out", str(out), env=env)
    assert refused.returncode == 2 and "has no paraphraser" in refused.stderr
