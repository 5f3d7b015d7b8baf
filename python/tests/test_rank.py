"""`CrossEncoder.rank` against sentence-transformers' `rank` (stored in
tests/data/parity_reference.json by scripts/st_reference.py)."""

import pytest

import crossflow


@pytest.fixture(scope="module")
def fp32(fp32_dir):
    return crossflow.CrossEncoder(fp32_dir, onnx_file="onnx/model.onnx")


def test_rank_orders_documents_as_sentence_transformers(fp32, reference):
    case = reference["rank"]
    ranked = fp32.rank(case["query"], case["documents"])
    assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in case["results"]]
    for got, want in zip(ranked, case["results"]):
        assert abs(float(got["score"]) - want["score"]) <= 1e-4
        assert set(got) == {"corpus_id", "score"}


def test_top_k_and_return_documents(fp32, reference):
    case = reference["rank"]
    top = fp32.rank(case["query"], case["documents"], top_k=3, return_documents=True)
    assert [r["corpus_id"] for r in top] == [r["corpus_id"] for r in case["results"][:3]]
    assert all(r["text"] == case["documents"][r["corpus_id"]] for r in top)
    assert fp32.rank(case["query"], []) == []


def test_ties_keep_the_documents_order(model):
    ranked = model.rank("A man plays a guitar.", ["Same text.", "Same text.", "A man plays guitar."])
    assert [r["corpus_id"] for r in ranked][1:] == [0, 1]


def test_rank_needs_a_score_model(nli_model):
    with pytest.raises(ValueError, match="one-label score model"):
        nli_model.rank("query", ["document"])
