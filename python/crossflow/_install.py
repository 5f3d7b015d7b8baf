"""Where an installed crossflow-py finds ONNX Runtime and the bundled models:
the `onnxruntime` and `crossflow-models` packages of the same environment, as
the `crossflow` command of the crossflow-cli wheel does."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

#: The ONNX Runtime release the engine is built for.
ORT_VERSION = "1.31.1"
#: The bundled one-label STS / paraphrase model (`model=None`).
DEFAULT_MODEL = "crossflow-sts-minilm-l6"
#: The bundled NLI model (`nli_model=None` of `crossflow.datafusion.register`).
DEFAULT_NLI_MODEL = "crossflow-nli-minilm-l6"


def refuse_other_crossflow() -> None:
    """Raises ImportError when the unrelated PyPI distribution `crossflow` is
    installed: it installs a top-level `crossflow` package too, over this one's files."""
    try:
        other = importlib.metadata.distribution("crossflow")
    except importlib.metadata.PackageNotFoundError:
        return
    raise ImportError(
        f"the PyPI distribution 'crossflow' {other.version} (an unrelated project) is installed "
        "in this environment and installs a 'crossflow' package over crossflow-py's; "
        "uninstall both and reinstall the one you want (pip uninstall crossflow crossflow-py)"
    )


def onnxruntime_library() -> str | None:
    """The ONNX Runtime library of the installed `onnxruntime` package, found
    without importing it; None when ORT_DYLIB_PATH is set or the package is
    missing (the engine then searches and names what it tried)."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return None
    spec = importlib.util.find_spec("onnxruntime")
    for location in (spec.submodule_search_locations or []) if spec else []:
        library = Path(location) / "capi" / f"libonnxruntime.so.{ORT_VERSION}"
        if library.is_file():
            return str(library)
    return None


def model_dir(model: str | os.PathLike | None, default: str) -> str:
    """`model` as given, or the bundled model `default`: in $CROSSFLOW_HOME/models,
    then in the installed crossflow-models package."""
    if model is not None:
        return os.fspath(model)
    looked = []
    home = os.environ.get("CROSSFLOW_HOME")
    if home:
        looked.append(Path(home) / "models" / default)
    spec = importlib.util.find_spec("crossflow_models")
    for location in (spec.submodule_search_locations or []) if spec else []:
        looked.append(Path(location) / default)
    for candidate in looked:
        if (candidate / "config.json").is_file():
            return str(candidate)
    where = ", ".join(str(p) for p in looked) or "no crossflow-models package is installed"
    raise FileNotFoundError(
        f"the bundled model {default} was not found ({where}); "
        "pip install crossflow-models, or pass the model's directory"
    )
