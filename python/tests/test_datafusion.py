"""The SQL functions in datafusion-python: the same results as `crossflow sql`."""

import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

import crossflow.datafusion
from conftest import PAIRS, run_cli

QUERY = (
    "SELECT id, cross_score(a, b) AS score, is_paraphrase(a, b, 0.8) AS strict, "
    "is_paraphrase(a, b) AS paraphrase, nli_label(a, b) AS label, nli_probs(a, b) AS probs "
    "FROM pairs ORDER BY id"
)


def test_sql_equals_the_crossflow_command(tmp_path, cli):
    ctx = SessionContext()
    names = crossflow.datafusion.register(ctx)
    assert names == ["cross_score", "is_paraphrase", "nli_label", "nli_probs"]
    ctx.register_parquet("pairs", str(PAIRS))
    ctx.sql(f"COPY ({QUERY}) TO '{tmp_path / 'python.parquet'}'").collect()
    run_cli(cli, "sql", "--table", f"pairs={PAIRS}", f"COPY ({QUERY}) TO '{tmp_path / 'cli.parquet'}'")
    python, command = (pq.read_table(tmp_path / f) for f in ("python.parquet", "cli.parquet"))
    assert python.num_rows == 48
    assert python.equals(command), f"{python.slice(0, 3)}\n!=\n{command.slice(0, 3)}"


def test_constants_and_a_shared_engine(model):
    ctx = SessionContext()
    crossflow.datafusion.register(ctx, model=model, nli_model=False)
    before = model.stats["pairs"]
    row = ctx.sql(
        "SELECT cross_score('A man plays a guitar.', 'Someone plays an instrument.') AS s"
    ).to_pylist()[0]
    assert model.stats["pairs"] > before, "the SQL function ran the CrossEncoder's own engine"
    want = model.predict(("A man plays a guitar.", "Someone plays an instrument."))
    assert row["s"] == pytest.approx(float(want), abs=1e-7)


def test_a_threshold_column_compares_each_row():
    ctx = SessionContext()
    assert crossflow.datafusion.register(ctx, nli_model=False) == ["cross_score", "is_paraphrase"]
    rows = ctx.sql(
        "SELECT cross_score(a, b) AS s, t, is_paraphrase(a, b, t) AS p FROM (VALUES "
        "('A man plays.', 'A man plays music.', 0.1), ('A man plays.', 'A man plays music.', 0.99), "
        "('A man plays.', 'A man plays music.', NULL)) AS v(a, b, t)"
    ).to_pylist()
    assert [r["p"] for r in rows] == [r["s"] >= r["t"] if r["t"] is not None else None for r in rows]
    assert [r["p"] for r in rows][:2] == [True, False]


def test_sql_errors_name_the_function():
    ctx = SessionContext()
    crossflow.datafusion.register(ctx, nli_model=False)
    with pytest.raises(Exception, match="cross_score: argument 1 must be a string"):
        ctx.sql("SELECT cross_score(1, 'b')").collect()


def test_options_for_models_already_loaded_are_refused(model):
    with pytest.raises(TypeError, match=r"\['max_length'\] would change no model"):
        crossflow.datafusion.register(SessionContext(), model=model, nli_model=False, max_length=64)
    with pytest.raises(TypeError, match=r"\['onnx_file'\] would change no model"):
        crossflow.datafusion.register(SessionContext(), model=model, onnx_file="onnx/model.onnx")
    with pytest.raises(TypeError, match="nli_model"):
        crossflow.datafusion.register(SessionContext(), nli_model=True)


@pytest.mark.parametrize("installed", ["54.1.0", "56.0.0", "4.0.0"])
def test_another_datafusion_major_is_refused(installed):
    with pytest.raises(ImportError, match=f"the installed datafusion {installed} is another major"):
        crossflow.datafusion.check_datafusion_version(installed, built="55.2.0")


def test_the_same_major_is_accepted():
    crossflow.datafusion.check_datafusion_version("55.0.0", built="55.2.0")
    major = crossflow.datafusion.DATAFUSION_VERSION.split(".")[0]
    assert major == "55"
