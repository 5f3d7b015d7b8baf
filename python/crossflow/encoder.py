"""`CrossEncoder`: the crossflow engine with the calling conventions of
sentence-transformers' `CrossEncoder`, plus Arrow columns in and out."""

from __future__ import annotations

import numbers
import os
import sys
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from crossflow import _install
from crossflow._crossflow import Engine

#: Pairs handed to the engine per call when a progress bar is shown.
PROGRESS_STEP = 1024


class CrossEncoder:
    """A cross-encoder loaded from a model directory (sentence-transformers
    layout with an ONNX graph), run by crossflow's engine.

    `model` is a directory, or a Hugging Face Hub repo id ("ORG/NAME",
    "ORG/NAME@REVISION") whose ONNX export is fetched into the Hugging Face
    cache, as `crossflow --model` does; `revision`, `token`,
    `local_files_only` and `cache_folder` are sentence-transformers' names
    for the Hub settings (default: HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_CACHE).
    `onnx_file="auto-int8"` picks the published int8 graph for this CPU.
    `model=None` is the bundled STS model (the `crossflow-models` package).
    The keyword arguments are the `crossflow` command's model flags
    (`--max-length` is `max_length`, ...); `None` keeps the command's default.
    `batch_invariant` is "auto", "on", "off", "one-pair", "scales" or a bool.

    One engine, one queue: calls from several Python threads share the
    model's micro-batches, and the GIL is released while the engine works.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        max_length: int | None = None,
        activation: str | None = None,
        batch_invariant: str | bool = "auto",
        onnx_file: str | None = None,
        sessions: int | None = None,
        threads: int | None = None,
        max_batch_tokens: int | None = None,
        max_batch_pairs: int | None = None,
        cache_pairs: int | None = None,
        queue_pairs: int | None = None,
        queue_tokens: int | None = None,
        batch_wait_ms: int | None = None,
        ort_lib: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | None = None,
        local_files_only: bool = False,
        cache_folder: str | os.PathLike | None = None,
        _start: bool = True,
    ) -> None:
        if isinstance(batch_invariant, bool):
            batch_invariant = "on" if batch_invariant else "off"
        self._engine = Engine(
            _install.model_dir(model, _install.DEFAULT_MODEL),
            onnx_file=onnx_file,
            max_length=max_length,
            device=device,
            activation=activation,
            batch_invariant=batch_invariant,
            sessions=sessions,
            threads=threads,
            max_batch_tokens=max_batch_tokens,
            max_batch_pairs=max_batch_pairs,
            cache_pairs=cache_pairs,
            queue_pairs=queue_pairs,
            queue_tokens=queue_tokens,
            batch_wait_ms=batch_wait_ms,
            ort_lib=os.fspath(ort_lib) if ort_lib is not None else _install.onnxruntime_library(),
            revision=revision,
            token=token,
            local_files_only=local_files_only,
            cache_folder=os.fspath(cache_folder) if cache_folder is not None else None,
            start=_start,
        )
        #: The directory the model was read from (a Hub model's snapshot in the cache).
        self.path = str(self._engine.path)

    # -- what the model is ---------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint: its files and the settings that change results."""
        return self._engine.fingerprint

    @property
    def name(self) -> str:
        """The model's directory name, or its Hub repo id."""
        return self._engine.name

    @property
    def revision(self) -> str | None:
        """The Hub commit a Hub model's files are from; None for a directory."""
        return self._engine.revision

    @property
    def onnx_file(self) -> str:
        """The ONNX graph the model runs."""
        return str(self._engine.onnx)

    @property
    def head(self) -> str:
        """"score" (one value per pair) or "classification" (one per label)."""
        return self._engine.head

    @property
    def labels(self) -> list[str] | None:
        """A classifier's labels, in the order of `predict`'s columns; None for a score model."""
        return self._engine.labels

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.labels else 1

    @property
    def activation(self) -> str | None:
        """A score model's activation ("sigmoid", "none" or "softmax"); None for a classifier."""
        return self._engine.activation

    @property
    def default_threshold(self) -> float:
        """The score that means 50 %: 0.5 after a sigmoid, 0 on raw logits
        (`is_paraphrase`'s default)."""
        return self._engine.default_threshold

    @property
    def max_length(self) -> int:
        """Maximum pair length in tokens; longer pairs are truncated (see `stats`)."""
        return self._engine.max_length

    @property
    def batch_invariant(self) -> bool:
        """Whether a pair's result never depends on the pairs batched with it."""
        return self._engine.batch_invariant

    @property
    def stats(self) -> dict[str, Any]:
        """The engine's counters since loading: pairs, truncated_pairs,
        cache_hits, cache_misses, batches, tokens, inference_seconds, ..."""
        return self._engine.stats()

    def __repr__(self) -> str:
        where = f"{self.name}@{self.revision}" if self.revision else self.path
        return f"CrossEncoder({where!r}, head={self.head!r}, fingerprint={self.fingerprint!r})"

    # -- sentence-transformers conventions -----------------------------------

    def predict(
        self,
        sentences: Sequence[tuple[str, str]] | tuple[str, str],
        *,
        batch_size: int | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
    ) -> np.ndarray | list | np.float32:
        """Scores text pairs as sentence-transformers' `CrossEncoder.predict` does.

        `sentences` is a list of `(a, b)` pairs (tuples or two-item lists;
        any iterable of them, or an `(n, 2)` NumPy array), or one pair as a
        tuple or list of two `str`. A score model
        gives one activated score per pair (shape `(n,)`), a classifier one
        row of logits per pair (`(n, labels)`), probabilities with
        `apply_softmax`. One pair gives one value (or row). float32.

        `batch_size` is how many pairs go to the engine per call (the steps of
        the progress bar; default: all at once, 1024 with a progress bar): the
        engine forms its own token-budgeted micro-batches, and results never
        depend on it. `convert_to_numpy=False` gives Python lists.
        """
        pairs, singular = _pairs(sentences)
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                    or batch_size < 1:
                raise ValueError(f"batch_size: {batch_size!r}; expected a positive int or None")
            batch_size = int(batch_size)
        step = batch_size or (PROGRESS_STEP if show_progress_bar else max(len(pairs), 1))
        chunks = []
        with _progress(len(pairs), show_progress_bar) as progress:
            for start in range(0, len(pairs), step):
                values = self._engine.predict(pairs[start : start + step], softmax=apply_softmax)
                chunks.append(values.to_numpy(zero_copy_only=False))
                progress(min(step, len(pairs) - start))
        width = self.num_labels
        flat = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
        scores = flat if width == 1 else flat.reshape(-1, width)
        if singular:
            scores = scores[0]
        if not convert_to_numpy:
            return scores.tolist()
        return scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int | None = None,
        show_progress_bar: bool = False,
    ) -> list[dict[str, Any]]:
        """Scores `query` against each document and returns
        `{"corpus_id", "score"[, "text"]}` dicts, best first (ties in input
        order), the first `top_k` of them: sentence-transformers'
        `CrossEncoder.rank`. Needs a score model."""
        if self.head != "score":
            raise ValueError(f"rank needs a one-label score model; {self.name} is a classifier")
        scores = self.predict(
            [(query, document) for document in documents],
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
        results = []
        for i, score in enumerate(scores):
            result = {"corpus_id": i, "score": score}
            if return_documents:
                result["text"] = documents[i]
            results.append(result)
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k]

    # -- Arrow -----------------------------------------------------------------

    def score(self, a: Any, b: Any) -> pa.FloatArray:
        """One float32 score per row of `a` and `b`, as a pyarrow array, null
        where a text is null. Each side is an Arrow string array (any object
        with `__arrow_c_array__` or `__arrow_c_stream__`: pyarrow, Polars,
        DuckDB results, ...; Utf8, LargeUtf8, Utf8View or dictionary-encoded),
        a list or pandas Series of str, or one str for every row. A
        classifier's score is the probability of its winning label."""
        return self._engine.score(_column(a, "a"), _column(b, "b"))

    def nli(self, a: Any, b: Any) -> pa.RecordBatch:
        """A classifier's `nli_label` (the winning label) and `nli_probs` (a
        struct of each label's probability) for the rows of `a` and `b`
        (as `score` takes them), as a pyarrow RecordBatch."""
        return self._engine.nli(_column(a, "a"), _column(b, "b"))


def _pairs(sentences: Any) -> tuple[Sequence, bool]:
    """The pairs of `predict` as a sequence, and whether `sentences` was one pair
    (a tuple or list of two `str`, as sentence-transformers reads it)."""
    if isinstance(sentences, (list, tuple)):
        singular = len(sentences) == 2 and all(isinstance(s, str) for s in sentences)
        return ([sentences] if singular else sentences), singular
    if isinstance(sentences, np.ndarray):
        sentences = sentences.tolist()
        singular = len(sentences) == 2 and all(isinstance(s, str) for s in sentences)
        return ([sentences] if singular else sentences), singular
    if isinstance(sentences, str):
        raise TypeError("predict: argument sentences is a str; expected (a, b) pairs")
    return list(sentences), False


def _column(value: Any, argument: str) -> Any:
    """One side of `score` / `nli` in a form the engine takes: None, a str,
    or an object with `__arrow_c_array__` (a stream is joined into one array,
    anything else converted to Arrow strings)."""
    if value is None or isinstance(value, str) or hasattr(value, "__arrow_c_array__"):
        return value
    try:
        if hasattr(value, "__arrow_c_stream__"):
            return pa.chunked_array(value).combine_chunks()
        return pa.array(value, type=pa.string())
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise TypeError(
            f"argument {argument} is a {type(value).__name__} that is not Arrow strings "
            f"and pyarrow cannot convert it to strings: {error}"
        ) from error


class _progress:
    """A progress bar over `total` pairs: tqdm's when installed, else a line on stderr."""

    def __init__(self, total: int, shown: bool) -> None:
        self.total, self.shown, self.done, self.bar = total, shown, 0, None

    def __enter__(self):
        if self.shown:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=self.total, unit="pair", desc="crossflow")
            except ImportError:
                self.bar = None
        return self

    def __call__(self, pairs: int) -> None:
        self.done += pairs
        if self.bar is not None:
            self.bar.update(pairs)
        elif self.shown:
            print(f"\rcrossflow: {self.done}/{self.total} pairs", end="", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.shown:
            print(file=sys.stderr)
