"""`CrossEncoder.predict` against sentence-transformers' on the same weights,
and its argument shapes and return types."""

import sys

import numpy as np
import pytest

import crossflow

#: Largest |logit - reference| accepted, as in the Rust parity tests (tests/parity.rs).
TOLERANCE = 1e-4


def reference_pairs(reference):
    return [tuple(pair) for pair in reference["pairs"]]


def test_predict_matches_sentence_transformers_fp32(reference, fp32_dir):
    model = crossflow.CrossEncoder(fp32_dir, onnx_file="onnx/model.onnx", activation="none")
    expected = reference["models"]["sts-fp32-sentence-transformers"]
    want = np.array([row[0] for row in expected["logits"]], dtype=np.float32)
    got = model.predict(reference_pairs(reference))
    assert got.shape == want.shape and got.dtype == np.float32
    worst = float(np.max(np.abs(got - want)))
    print(f"{len(want)} pairs, max |logit - sentence-transformers| = {worst:e}")
    assert worst <= TOLERANCE


def test_predict_applies_the_models_activation(reference, fp32_dir):
    sigmoid = crossflow.CrossEncoder(fp32_dir, onnx_file="onnx/model.onnx")
    assert sigmoid.activation == "sigmoid"
    logits = np.array([row[0] for row in reference["models"]["sts-fp32"]["logits"]])
    got = sigmoid.predict(reference_pairs(reference))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), atol=TOLERANCE)


def test_one_pair_gives_one_value_and_lists_give_lists(model):
    pair = ("A man is playing a guitar.", "Someone plays an instrument.")
    many = model.predict([pair, ["A cat sleeps.", "The market fell."]])
    assert many.shape == (2,)
    one = model.predict(pair)
    assert isinstance(one, np.float32) and one == many[0]
    assert model.predict([pair], convert_to_numpy=False) == [float(many[0])]
    assert model.predict([]).shape == (0,)


def test_batch_size_and_progress_do_not_change_results(reference, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain progress line
    # No cache: the stepped call runs the model again.
    model = crossflow.CrossEncoder(cache_pairs=0)
    pairs = reference_pairs(reference)[:50]
    whole = model.predict(pairs)
    stepped = model.predict(pairs, batch_size=7, show_progress_bar=True)
    np.testing.assert_array_equal(whole, stepped)
    assert model.stats["unique_pairs"] == 100
    assert "crossflow: 50/50 pairs" in capsys.readouterr().err
    for wrong in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(pairs, batch_size=wrong)
    np.testing.assert_array_equal(model.predict(pairs, batch_size=np.int64(9)), whole)


def test_pairs_as_numpy_arrays_and_iterables(model):
    pairs = [("A man eats.", "Someone is eating."), ("A cat sleeps.", "Markets fell.")]
    want = model.predict(pairs)
    np.testing.assert_array_equal(model.predict(np.array(pairs)), want)
    np.testing.assert_array_equal(model.predict(pair for pair in pairs), want)
    np.testing.assert_array_equal(model.predict([list(p) for p in pairs]), want)
    assert model.predict(np.array(pairs[0])) == want[0]


def test_a_model_opened_lazily_starts_on_its_first_call():
    model = crossflow.CrossEncoder(_start=False)
    assert not model._engine.started
    model.predict(("A man eats.", "Someone is eating."))
    assert model._engine.started


def test_a_classifier_gives_rows_of_logits_or_probabilities(nli_model):
    pairs = [("A man is sleeping.", "A man is awake."), ("A dog runs.", "An animal moves.")]
    logits = nli_model.predict(pairs)
    assert logits.shape == (2, len(nli_model.labels)) and logits.dtype == np.float32
    probs = nli_model.predict(pairs, apply_softmax=True)
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, want, rtol=1e-5)
    assert nli_model.predict(pairs[0]).shape == (len(nli_model.labels),)


@pytest.mark.parametrize(
    "pairs",
    [[("only one text",)], [("a", 3)], [["a", None]], [("a", "b", "c")]],
)
def test_items_that_are_not_two_strings_are_a_type_error(model, pairs):
    with pytest.raises(TypeError, match="not a pair of str"):
        model.predict(pairs)
