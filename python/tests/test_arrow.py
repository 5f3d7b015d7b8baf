"""`score` and `nli` over Arrow columns: the same scores as `crossflow score`,
every string layout, nulls, and clear errors."""

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import PAIRS, run_cli


@pytest.fixture(scope="module")
def pairs():
    return pq.read_table(PAIRS)


def test_score_equals_the_crossflow_command(model, pairs, cli, tmp_path):
    out = tmp_path / "scored.parquet"
    run_cli(cli, "score", "--input", PAIRS, "--a", "a", "--b", "b", "--output", out)
    want = pq.read_table(out).column("cross_score").combine_chunks()
    got = model.score(pairs.column("a"), pairs.column("b"))
    assert got.type == pa.float32()
    assert got.equals(want), "scores differ from crossflow score on the same machine and model"


def test_predict_and_score_agree(model, pairs):
    a, b = pairs.column("a").to_pylist(), pairs.column("b").to_pylist()
    np.testing.assert_array_equal(model.predict(list(zip(a, b))), model.score(a, b).to_numpy())


@pytest.mark.parametrize("kind", ["large_string", "string_view", "dictionary", "polars", "stream"])
def test_every_string_layout_gives_the_same_scores(model, pairs, kind):
    a, b = pairs.column("a").combine_chunks(), pairs.column("b").combine_chunks()
    want = model.score(a, b)
    convert = {
        "large_string": lambda x: x.cast(pa.large_string()),
        "string_view": lambda x: x.cast(pa.string_view()),
        "dictionary": lambda x: pc.dictionary_encode(x),
        "polars": lambda x: pl.Series(x.to_pylist()),
        "stream": lambda x: pa.chunked_array([x.slice(0, 10), x.slice(10)]),
    }[kind]
    assert model.score(convert(a), convert(b)).equals(want)


def test_nulls_empty_strings_and_constants(model):
    a = pa.array(["A man plays a guitar.", None, "", "A dog runs."])
    scores = model.score(a, "Someone plays an instrument.")
    assert scores.null_count == 1 and not scores[1].is_valid
    assert scores[2].is_valid, "an empty string is a text, scored"
    assert model.score(a, None).null_count == 4
    assert model.score(["x", "y"], ["x", "y"]).to_pylist() == model.predict([("x", "x"), ("y", "y")]).tolist()
    assert model.score([], []).type == pa.float32() and len(model.score([], [])) == 0
    assert model.score([None, None], "x").null_count == 2
    assert model.score(pa.array([None, None]), pa.array(["x", "y"])).null_count == 2


def test_wrong_types_are_type_errors_naming_the_argument(model):
    with pytest.raises(TypeError, match=r"score: argument b is an Arrow Int64 array; expected strings"):
        model.score(pa.array(["a"]), pa.array([1]))
    with pytest.raises(TypeError, match=r"argument a"):
        model.score(object(), "b")
    with pytest.raises(TypeError, match=r"argument a is a list"):
        model.score([1, 2], ["a", "b"])
    with pytest.raises(ValueError, match="different lengths"):
        model.score(pa.array(["a", "b"]), pa.array(["a"]))


def test_nli_gives_labels_and_probabilities(nli_model, model):
    a = pa.array(["A man is sleeping.", None])
    out = nli_model.nli(a, pa.array(["A man is awake.", "x"]))
    assert out.schema.names == ["nli_label", "nli_probs"]
    assert out.column("nli_label")[0].as_py() in nli_model.labels
    assert out.column("nli_label")[1].as_py() is None
    probs = out.column("nli_probs")[0].as_py()
    assert list(probs) == nli_model.labels and abs(sum(probs.values()) - 1) < 1e-5
    with pytest.raises(ValueError, match="needs a model with several labels"):
        model.nli(a, a)


def test_model_attributes_and_stats(model, nli_model):
    assert model.head == "score" and model.labels is None and model.num_labels == 1
    assert nli_model.head == "classification" and len(nli_model.labels) == 3
    assert len(model.fingerprint) >= 16 and model.fingerprint != nli_model.fingerprint
    assert model.max_length > 0 and model.batch_invariant
    before = model.stats
    model.score(pa.array(["A very long text " * 100]), "short")
    after = model.stats
    assert after["pairs"] == before["pairs"] + 1
    assert after["truncated_pairs"] == before["truncated_pairs"] + 1
    model.score(pa.array(["A very long text " * 100]), "short")
    assert model.stats["cache_hits"] == after["cache_hits"] + 1
