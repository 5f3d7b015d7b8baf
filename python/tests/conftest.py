"""Fixtures of the crossflow-py tests. They run against the installed wheel
(scripts/test-python installs it into a fresh venv with the crossflow-cli and
crossflow-models wheels) from the repository's tests and data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAIRS = REPO / "examples" / "pairs.parquet"
REFERENCE = REPO / "tests" / "data" / "parity_reference.json"


@pytest.fixture(scope="session")
def reference() -> dict:
    """The stored parity reference: pairs, fp32 logits of onnxruntime and
    sentence-transformers, and one sentence-transformers `rank` call."""
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def fp32_dir(reference) -> Path:
    """The fp32 STS model the references were computed with (../shared/models)."""
    path = (REPO / reference["models"]["sts-fp32"]["dir"]).resolve()
    assert (path / "config.json").is_file(), f"the fp32 STS model is missing at {path}"
    return path


@pytest.fixture(scope="session")
def model():
    """The bundled STS model, as a user gets it with no arguments."""
    import crossflow

    return crossflow.CrossEncoder()


@pytest.fixture(scope="session")
def nli_model():
    """The bundled NLI model, found through crossflow-models."""
    import crossflow_models

    import crossflow

    return crossflow.CrossEncoder(crossflow_models.path("crossflow-nli-minilm-l6"))


@pytest.fixture(scope="session")
def cli() -> str:
    """The `crossflow` command installed beside this Python (crossflow-cli)."""
    found = shutil.which("crossflow", path=str(Path(sys.executable).parent))
    assert found, f"no crossflow command beside {sys.executable}: install the crossflow-cli wheel"
    return found


def run_cli(cli: str, *args: str, cwd: Path | None = None) -> str:
    """Runs the `crossflow` command; fails the test with its stderr when it fails."""
    done = subprocess.run([cli, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "CROSSFLOW_LOG": "warn"})
    assert done.returncode == 0, f"crossflow {' '.join(map(str, args))} failed:\n{done.stderr}"
    return done.stdout
