"""crossflow's SQL functions in a datafusion-python `SessionContext`.

    >>> from datafusion import SessionContext
    >>> import crossflow.datafusion
    >>> ctx = SessionContext()
    >>> crossflow.datafusion.register(ctx)
    ['cross_score', 'is_paraphrase', 'nli_label', 'nli_probs']
    >>> ctx.sql("SELECT cross_score('A man plays.', 'Someone plays.')").collect()

The functions are DataFusion FFI scalar UDFs (`__datafusion_scalar_udf__`),
built against one DataFusion major release: `register` refuses a
`datafusion` package of another major version, whose FFI differs (a call
through a mismatched FFI crashes the process instead of raising).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from crossflow import _install
from crossflow._crossflow import DATAFUSION_VERSION, scalar_functions
from crossflow.encoder import CrossEncoder

#: Options of `register` that apply to `model` only, as on the command line.
MODEL_ONLY = ("onnx_file", "activation", "revision")


def check_datafusion_version(installed: str, built: str = DATAFUSION_VERSION) -> None:
    """Raises ImportError unless `installed` (a datafusion version) has the
    major version of `built`, the DataFusion the functions are built against."""
    if installed.split(".")[0] != built.split(".")[0]:
        major = built.split(".")[0]
        raise ImportError(
            f"crossflow's SQL functions are built against DataFusion {built}; the installed "
            f"datafusion {installed} is another major version, whose FFI differs. "
            f"Install a matching one: pip install 'datafusion>={major},<{int(major) + 1}'"
        )


def register(
    ctx: Any,
    model: str | os.PathLike | CrossEncoder | None = None,
    nli_model: str | os.PathLike | CrossEncoder | None | bool = None,
    **options: Any,
) -> list[str]:
    """Registers `cross_score(a, b)`, `is_paraphrase(a, b [, threshold])`
    (a one-label `model`), `nli_label(a, b)` and `nli_probs(a, b)` (`nli_model`)
    in `ctx`, a `datafusion.SessionContext`, and returns their names.

    `model` and `nli_model` are model directories or Hub repo ids (None: the
    bundled STS and NLI models) or loaded `CrossEncoder`s, whose engine is then shared with
    Python calls; `nli_model=False` registers no NLI functions. A model loaded
    here starts ONNX Runtime when a query first calls one of its functions.
    `options` are `CrossEncoder`'s keyword arguments for the models loaded here
    (`onnx_file`, `activation` and `revision` apply to `model` only, as
    `--onnx-file` and `--activation` do on the command line); they cannot change a `CrossEncoder`
    passed in."""
    check_datafusion_version(importlib.metadata.version("datafusion"))
    from datafusion import udf

    if nli_model is True:
        raise TypeError("nli_model: a model directory, a CrossEncoder, None or False; got True")
    unused = sorted(options) if isinstance(nli_model, CrossEncoder) or nli_model is False else [
        name for name in MODEL_ONLY if name in options
    ]
    if isinstance(model, CrossEncoder) and unused:
        raise TypeError(f"options {unused} would change no model: model is already loaded")
    score = _opened(model, _install.DEFAULT_MODEL, options)
    nli = None
    if nli_model is not False:
        shared = {k: v for k, v in options.items() if k not in MODEL_ONLY}
        nli = _opened(nli_model, _install.DEFAULT_NLI_MODEL, shared)
    names = []
    for function in scalar_functions(score._engine, nli._engine if nli else None):
        ctx.register_udf(udf(function))
        names.append(function.name)
    return names


def _opened(model: Any, default: str, options: dict[str, Any]) -> CrossEncoder:
    if isinstance(model, CrossEncoder):
        return model
    return CrossEncoder(_install.model_dir(model, default), _start=False, **options)
