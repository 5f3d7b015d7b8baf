"""The README's Python recipes run as shown, where `examples/` is visible."""

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import REPO


def recipes() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_the_recipes():
    assert len(recipes()) >= 3
    shown = "".join(recipes())
    for library in ("pandas", "polars", "duckdb", "datafusion", "COPY"):
        assert library in shown, f"no {library} recipe"


@pytest.mark.parametrize("index", range(len(recipes())))
def test_a_recipe_runs(index, tmp_path):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    done = subprocess.run([sys.executable, "-c", recipes()[index]], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"recipe {index}:\n{recipes()[index]}\n{done.stderr}"
    written = tmp_path / "scored.parquet"
    if "scored.parquet" in recipes()[index]:
        assert pq.read_table(written).num_rows == 48
