"""The models bundled with crossflow (the `crossflow-models` distribution).

The `crossflow` binary of the `crossflow-cli` wheel finds them here by itself;
this module only tells Python code where they are.
"""

from pathlib import Path

#: Folder names of the bundled models (sentence-transformers layout, int8 ONNX).
NAMES = ("crossflow-sts-minilm-l6", "crossflow-nli-minilm-l6", "all-minilm-l6-v2")


def path(name: str) -> Path:
    """The folder of bundled model `name`, e.g. `path("crossflow-sts-minilm-l6")`."""
    if name not in NAMES:
        raise KeyError(f"no bundled model {name!r}; bundled: {', '.join(NAMES)}")
    return Path(__file__).parent / name
