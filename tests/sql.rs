//! End-to-end SQL: crossflow's functions in DataFusion over real files and models.

use std::path::Path;

use arrow::array::{Array, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use crossflow::Texts;
use crossflow_pipelines::models::ModelArgs;
use crossflow_pipelines::sql::session;
use crossflow_tests::{PAIRS, query, read_parquet, write_pairs_parquet};
use crossflow_udfs::ModelSet;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// The bundled models as `crossflow sql` opens them: not started.
fn models() -> ModelSet {
    ModelArgs::default()
        .load_model_set(None)
        .expect("the bundled models")
}

async fn ctx_with_pairs(dir: &Path) -> (SessionContext, ModelSet) {
    let path = dir.join("pairs.parquet");
    write_pairs_parquet(&path);
    let models = models();
    let ctx = session(&models, &[format!("t={}", path.display())])
        .await
        .expect("session");
    (ctx, models)
}

fn f32_column<'a>(batch: &'a RecordBatch, name: &str) -> &'a Float32Array {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_primitive::<Float32Type>()
}

/// A session starts a model's ONNX Runtime sessions only when a query runs
/// one of its functions: planning reads the model's description alone.
#[tokio::test]
async fn a_query_starts_only_the_models_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, models) = ctx_with_pairs(dir.path()).await;
    let nli = models.nli.clone().unwrap();
    let started = |model: &crossflow::CrossEncoder| (model.is_started(), model.stats().sessions);
    assert_eq!(started(&models.score), (false, 0), "opened, not started");
    assert_eq!(started(&nli), (false, 0));
    query(&ctx, "EXPLAIN SELECT nli_label(a, b) FROM t").await;
    assert_eq!(started(&nli), (false, 0), "planning starts nothing");
    query(&ctx, "SELECT cross_score(a, b), is_paraphrase(a, b) FROM t").await;
    assert!(models.score.stats().sessions > 0, "the score model ran");
    assert_eq!(started(&nli), (false, 0), "no NLI function, no NLI session");
    query(&ctx, "SELECT nli_label(a, b) FROM t").await;
    assert!(nli.is_started() && nli.stats().sessions > 0);
}

/// A call with no pair to run (no rows, or only null rows) starts nothing.
#[test]
fn a_call_without_pairs_starts_no_session() {
    let options = crossflow::EngineOptions::default();
    let model = crossflow::CrossEncoder::open(crossflow_tests::sts_model_dir(), &options).unwrap();
    assert_eq!(
        options.cache_pairs, 0,
        "no cache: every pair goes to the engine"
    );
    let empty = arrow::array::StringArray::from(Vec::<Option<&str>>::new());
    let nulls = arrow::array::StringArray::from(vec![None::<&str>, None]);
    let scores = model
        .score(&Texts::Utf8(&empty), &Texts::Utf8(&empty))
        .unwrap();
    assert_eq!(scores.len(), 0);
    let scores = model
        .score(&Texts::Utf8(&nulls), &Texts::Scalar(Some("b")))
        .unwrap();
    assert_eq!(scores.null_count(), 2);
    assert!(!model.is_started(), "nothing to run, nothing started");
    assert_eq!(model.stats().unique_pairs, 0);
}

#[tokio::test]
async fn cross_score_ranks_pairs_and_matches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, models) = ctx_with_pairs(dir.path()).await;
    let batch = query(
        &ctx,
        "SELECT id, a, b, cross_score(a, b) AS s FROM t ORDER BY s DESC NULLS LAST",
    )
    .await;
    assert_eq!(batch.num_rows(), PAIRS.len());
    assert_eq!(
        batch.schema().field_with_name("s").unwrap().data_type(),
        &DataType::Float32
    );
    let scores = f32_column(&batch, "s");
    let valid: Vec<f32> = scores.iter().flatten().collect();
    assert_eq!(valid.len(), 6, "two rows have a null text");
    assert!(
        valid.windows(2).all(|w| w[0] >= w[1]),
        "ORDER BY s DESC: {valid:?}"
    );

    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>();
    for row in 0..batch.num_rows() {
        let (_, a, b) = PAIRS.iter().find(|p| p.0 == ids.value(row)).unwrap();
        let direct = models
            .score
            .score(&Texts::Scalar(*a), &Texts::Scalar(*b))
            .unwrap();
        assert_eq!(direct.is_null(0), scores.is_null(row));
        if scores.is_valid(row) {
            assert!(
                (direct.value(0) - scores.value(row)).abs() < 1e-6,
                "row {row}"
            );
        }
    }
    let related =
        |id: i64| scores.value((0..batch.num_rows()).find(|&r| ids.value(r) == id).unwrap());
    assert!(
        related(1) > related(2),
        "guitar/instrument beats guitar/stock market"
    );
}

#[tokio::test]
async fn a_constant_argument_scores_against_a_column() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, models) = ctx_with_pairs(dir.path()).await;
    let batch = query(&ctx, "SELECT b, cross_score('A person plays music.', b) AS s FROM t WHERE b IS NOT NULL ORDER BY id").await;
    let docs = batch.column_by_name("b").unwrap();
    let expected = models
        .score
        .score(
            &Texts::Scalar(Some("A person plays music.")),
            &Texts::from_array(docs).unwrap(),
        )
        .unwrap();
    let got = f32_column(&batch, "s");
    assert_eq!(got.len(), expected.len());
    for i in 0..got.len() {
        assert!((got.value(i) - expected.value(i)).abs() < 1e-6);
    }
    let constant = query(&ctx, "SELECT cross_score('a cat', 'a cat') AS s").await;
    assert!(
        f32_column(&constant, "s").value(0) > 0.5,
        "identical texts are similar"
    );
}

/// Dictionary-encoded strings reach the engine as they are (no unpacking)
/// and score like plain strings; nulls stay null.
#[tokio::test]
async fn dictionary_strings_score_like_plain_strings() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    let sql = "SELECT cross_score(arrow_cast(a, 'Dictionary(Int32, Utf8)'), \
               arrow_cast(b, 'Dictionary(UInt8, Utf8View)')) AS d, cross_score(a, b) AS s \
               FROM t ORDER BY id";
    let batch = query(&ctx, sql).await;
    let (dict, plain) = (f32_column(&batch, "d"), f32_column(&batch, "s"));
    assert!(plain.len() > 2);
    for i in 0..plain.len() {
        assert_eq!(dict.is_valid(i), plain.is_valid(i), "row {i}");
        if plain.is_valid(i) {
            assert_eq!(dict.value(i), plain.value(i), "row {i}");
        }
    }
}

#[tokio::test]
async fn nli_functions_use_the_nli_model_and_its_label_names() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    let sql = "SELECT id, nli_label(a, b) AS label, nli_probs(a, b) AS p, \
               nli_probs(a, b)['entailment'] AS pe FROM t ORDER BY id";
    let batch = query(&ctx, sql).await;
    let DataType::Struct(fields) = batch
        .schema()
        .field_with_name("p")
        .unwrap()
        .data_type()
        .clone()
    else {
        panic!("nli_probs is a struct");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["contradiction", "entailment", "neutral"]);
    let labels = batch.column_by_name("label").unwrap().as_string::<i32>();
    let probs = batch.column_by_name("p").unwrap().as_struct();
    for row in 0..batch.num_rows() {
        if labels.is_null(row) {
            assert!(probs.is_null(row) && f32_column(&batch, "pe").is_null(row));
            continue;
        }
        let p: Vec<f32> = (0..3)
            .map(|c| probs.column(c).as_primitive::<Float32Type>().value(row))
            .collect();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let best = (0..3).max_by(|&x, &y| p[x].total_cmp(&p[y])).unwrap();
        assert_eq!(labels.value(row), names[best]);
        assert_eq!(f32_column(&batch, "pe").value(row), p[1]);
    }
    assert_eq!(
        labels.value(7),
        "contradiction",
        "sleeping vs running a marathon"
    );
}

#[tokio::test]
async fn is_paraphrase_thresholds_the_score() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    let sql = "SELECT cross_score(a, b) AS s, is_paraphrase(a, b) AS p, is_paraphrase(a, b, 0.3) AS p3 FROM t";
    let batch = query(&ctx, sql).await;
    let scores = f32_column(&batch, "s");
    let default = batch.column_by_name("p").unwrap().as_boolean();
    let low = batch.column_by_name("p3").unwrap().as_boolean();
    for row in 0..batch.num_rows() {
        assert_eq!(default.is_null(row), scores.is_null(row));
        if scores.is_valid(row) {
            assert_eq!(default.value(row), scores.value(row) >= 0.5);
            assert_eq!(low.value(row), scores.value(row) >= 0.3);
        }
    }
}

/// A threshold column: each row against its own threshold (constant texts
/// included); a NULL threshold gives NULL, as in a column.
#[tokio::test]
async fn is_paraphrase_takes_a_threshold_per_row() {
    let ctx = session(&models(), &[]).await.expect("session");
    let sql = "SELECT t, cross_score('A man plays a guitar.', 'A man plays music.') AS s, \
               is_paraphrase('A man plays a guitar.', 'A man plays music.', t) AS p, \
               is_paraphrase('A man plays a guitar.', 'A man plays music.', NULL) AS n \
               FROM (VALUES (0.05), (0.999), (CAST(NULL AS FLOAT))) AS v(t)";
    let batch = query(&ctx, sql).await;
    let thresholds = batch
        .column_by_name("t")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    let score = f32_column(&batch, "s").value(0);
    let decided = batch.column_by_name("p").unwrap().as_boolean();
    let null = batch.column_by_name("n").unwrap();
    assert_eq!(null.null_count(), batch.num_rows());
    assert!(
        decided.value(0) && !decided.value(1) && decided.is_null(2),
        "score {score}"
    );
    for row in 0..2 {
        assert_eq!(
            decided.value(row),
            f64::from(score) >= thresholds.value(row)
        );
    }
}

#[tokio::test]
async fn wrong_argument_types_are_planning_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    for (sql, needle) in [
        (
            "SELECT cross_score(id, b) FROM t",
            "cross_score: argument 1 must be a string",
        ),
        (
            "SELECT cross_score(a) FROM t",
            "cross_score takes (text_a, text_b)",
        ),
        (
            "SELECT is_paraphrase(a, b, 'high') FROM t",
            "threshold) must be a number",
        ),
    ] {
        let err = ctx.sql(sql).await.expect_err(sql).to_string();
        assert!(err.contains(needle), "{sql}: {err}");
    }
}

#[tokio::test]
async fn copy_to_parquet_writes_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    let out = dir.path().join("out.parquet");
    let sql = format!(
        "COPY (SELECT id, a, b, cross_score(a, b) AS s, nli_label(a, b) AS label FROM t) TO '{}' STORED AS PARQUET",
        out.display()
    );
    query(&ctx, &sql).await;
    let batch = read_parquet(&out);
    assert_eq!(batch.num_rows(), PAIRS.len());
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "a", "b", "s", "label"]);
    assert_eq!(f32_column(&batch, "s").null_count(), 2);
}

#[tokio::test]
async fn csv_tables_and_other_string_types_work() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = ctx_with_pairs(dir.path()).await;
    let csv = dir.path().join("pairs.csv");
    std::fs::write(&csv, "q,d\nA man plays guitar.,Someone plays an instrument.\nA man plays guitar.,Rain is expected.\n").unwrap();
    query(&ctx, &format!("CREATE EXTERNAL TABLE c STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')", csv.display())).await;
    let sql = "SELECT cross_score(q, d) AS s, cross_score(arrow_cast(q, 'LargeUtf8'), arrow_cast(d, 'Utf8View')) AS s2 FROM c";
    let batch = query(&ctx, sql).await;
    let (s, s2) = (f32_column(&batch, "s"), f32_column(&batch, "s2"));
    assert_eq!(s.len(), 2);
    assert!(s.value(0) > s.value(1));
    assert_eq!(s.values(), s2.values());
}

/// A function whose results depend on the other rows of a batch (a dynamically
/// quantized graph with `--batch-invariant off`) is declared volatile; the
/// default, batch-invariant one immutable.
#[test]
fn volatility_follows_batch_invariance() {
    use crossflow_udfs::{CrossFunction, cross_udf};
    use datafusion::logical_expr::Volatility;
    let load = |batch_invariant| {
        let options = crossflow::EngineOptions {
            batch_invariant,
            ..crossflow::EngineOptions::default()
        };
        Arc::new(crossflow::CrossEncoder::load(crossflow_tests::sts_model_dir(), &options).unwrap())
    };
    let volatility = |batch_invariant| {
        let udf = cross_udf(CrossFunction::Score, "cross_score", load(batch_invariant)).unwrap();
        udf.signature().volatility
    };
    assert_eq!(volatility(None), Volatility::Immutable);
    assert_eq!(volatility(Some(false)), Volatility::Volatile);
}

#[tokio::test]
async fn a_float_column_with_nan_reads_as_written() {
    // Parquet statistics leave NaN out: min = max = 0.5 here.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.parquet");
    crossflow_tests::write_parquet(
        &path,
        vec![(
            "x",
            Arc::new(arrow::array::Float64Array::from(vec![0.5, f64::NAN, 0.5])) as _,
        )],
    );
    let ctx = session(&models(), &[format!("f={}", path.display())])
        .await
        .unwrap();
    let batch = query(&ctx, "SELECT count(*) AS n FROM f WHERE isnan(x)").await;
    let n = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(n.value(0), 1);
}
