//! The `crossflow` command line: in-process for the jobs, and the real binary
//! for exit codes and printed output.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type};
use clap::Parser;
use crossflow::Texts;
use crossflow_pipelines::cli::{Cli, run};
use crossflow_tests::{
    PAIRS, crossflow_binary, load, nli_model_dir, read_parquet, repo_root, sts_model_dir,
    write_pairs_parquet,
};

async fn crossflow(args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("crossflow").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(cli, &mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("pairs.parquet");
    write_pairs_parquet(&path);
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn score_keeps_every_column_and_adds_the_engine_score() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (input(dir.path()), dir.path().join("scored.parquet"));
    crossflow(&[
        "score",
        "--input",
        s(&input),
        "--a",
        "a",
        "--b",
        "b",
        "--output",
        s(&output),
        "--batch-size",
        "3",
    ])
    .await
    .unwrap();
    let batch = read_parquet(&output);
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "a", "b", "cross_score"]);
    assert_eq!(batch.num_rows(), PAIRS.len());
    let scores = batch
        .column_by_name("cross_score")
        .unwrap()
        .as_primitive::<Float32Type>();
    let model = load(&sts_model_dir());
    for (row, (_, a, b)) in PAIRS.iter().enumerate() {
        let direct = model.score(&Texts::Scalar(*a), &Texts::Scalar(*b)).unwrap();
        assert_eq!(scores.is_null(row), direct.is_null(0), "row {row}");
        if direct.is_valid(0) {
            assert!(
                (scores.value(row) - direct.value(0)).abs() < 1e-6,
                "row {row}"
            );
        }
    }
}

/// Dictionary-encoded text columns are scored as they are (the engine reads
/// them without a cast) and give the scores of plain strings.
#[tokio::test]
async fn score_reads_dictionary_text_columns_like_plain_ones() {
    use arrow::array::{ArrayRef, DictionaryArray};
    use arrow::datatypes::Int32Type;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let plain_input = input(dir.path());
    let dictionary_input = dir.path().join("dictionary.parquet");
    let texts = |side: usize| {
        let dictionary: DictionaryArray<Int32Type> = PAIRS
            .iter()
            .map(|&(_, a, b)| if side == 0 { a } else { b })
            .collect();
        Arc::new(dictionary) as ArrayRef
    };
    crossflow_tests::write_parquet(&dictionary_input, vec![("a", texts(0)), ("b", texts(1))]);
    let mut scores = Vec::new();
    for (name, input) in [("plain", &plain_input), ("dictionary", &dictionary_input)] {
        let output = dir.path().join(format!("{name}-scored.parquet"));
        crossflow(&[
            "score",
            "--input",
            s(input),
            "--a",
            "a",
            "--b",
            "b",
            "--output",
            s(&output),
        ])
        .await
        .unwrap();
        let batch = read_parquet(&output);
        assert!(
            matches!(
                batch.column_by_name("a").unwrap().data_type(),
                DataType::Dictionary(..)
            ) == (name == "dictionary"),
            "{name}: the input column is kept as it was"
        );
        scores.push(batch.column_by_name("cross_score").unwrap().clone());
    }
    assert_eq!(&scores[0], &scores[1]);
}

#[tokio::test]
async fn score_with_a_classifier_adds_label_and_probabilities_and_threshold_adds_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let nli_out = dir.path().join("nli.parquet");
    let model = nli_model_dir();
    crossflow(&[
        "score",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&nli_out),
    ])
    .await
    .unwrap();
    let batch = read_parquet(&nli_out);
    assert!(
        matches!(batch.schema().field_with_name("nli_probs").unwrap().data_type(), DataType::Struct(f) if f.len() == 3)
    );
    let labels = batch
        .column_by_name("nli_label")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(labels.value(7), "contradiction");
    let refused = crossflow(&[
        "score",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&dir.path().join("refused.parquet")),
        "--threshold",
        "0.5",
    ])
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("--threshold needs a one-label score model"),
        "{refused}"
    );

    let flagged = dir.path().join("flagged.parquet");
    crossflow(&[
        "score",
        "--input",
        s(&input),
        "--output",
        s(&flagged),
        "--threshold",
        "0.5",
    ])
    .await
    .unwrap();
    let batch = read_parquet(&flagged);
    let scores = batch
        .column_by_name("cross_score")
        .unwrap()
        .as_primitive::<Float32Type>();
    let flags = batch.column_by_name("is_paraphrase").unwrap().as_boolean();
    for row in (0..batch.num_rows()).filter(|&r| scores.is_valid(r)) {
        assert_eq!(flags.value(row), scores.value(row) >= 0.5);
    }
}

#[tokio::test]
async fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.parquet");
    let err = crossflow(&[
        "score",
        "--input",
        s(&input),
        "--a",
        "question",
        "--output",
        s(&out),
    ])
    .await
    .unwrap_err();
    assert!(
        err.contains("\"question\" not found") && err.contains("id, a, b"),
        "{err}"
    );
    let err = crossflow(&[
        "score",
        "--input",
        s(&input),
        "--a",
        "id",
        "--output",
        s(&out),
    ])
    .await
    .unwrap_err();
    assert!(err.contains("\"id\"") && err.contains("Int64"), "{err}");
    let err = crossflow(&["score", "--input", "/no/such.parquet", "--output", s(&out)])
        .await
        .unwrap_err();
    assert!(err.contains("/no/such.parquet"), "{err}");
    let err = crossflow(&[
        "score",
        "--model",
        "/no/model",
        "--input",
        s(&input),
        "--output",
        s(&out),
    ])
    .await
    .unwrap_err();
    assert!(err.contains("/no/model"), "{err}");
    let not_parquet = dir.path().join("text.parquet");
    std::fs::write(&not_parquet, "not parquet").unwrap();
    let err = crossflow(&["score", "--input", s(&not_parquet), "--output", s(&out)])
        .await
        .unwrap_err();
    assert!(err.contains("text.parquet"), "{err}");
}

#[tokio::test]
async fn sql_prints_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let table = format!("t={}", s(&input(dir.path())));
    let query = "SELECT id, round(cross_score(a, b), 3) AS s FROM t WHERE id <= 2 ORDER BY id";
    let csv = crossflow(&["sql", "--table", &table, "--format", "csv", query])
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,s");
    assert_eq!(lines.len(), 3);
    let json = crossflow(&["sql", "-t", &table, "--format", "json", query])
        .await
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], 1);
    assert!(first["s"].as_f64().unwrap() > 0.5);
}

#[test]
fn the_binary_runs_sql_over_the_bundled_sample_and_a_statement_that_does_not_plan_exits_2() {
    let sample = repo_root().join("examples/pairs.parquet");
    let output = Command::new(crossflow_binary())
        .args(["sql", "--table", &format!("pairs={}", sample.display())])
        .arg("SELECT id, cross_score(a, b) AS s, nli_label(a, b) AS nli FROM pairs ORDER BY s DESC LIMIT 3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("| id") && stdout.contains("| nli"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("| ")).count(),
        4,
        "header and 3 rows:\n{stdout}"
    );

    let failed = Command::new(crossflow_binary())
        .args(["sql", "SELECT cross_score(1, 2)"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("error: "));
}

/// The binary's exit code and its `error:` line for `args`.
fn failure(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(crossflow_binary())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn exit_codes_follow_the_kind_of_error() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo_root().join("examples/pairs.parquet");
    let sample = sample.to_str().unwrap();
    let out = dir.path().join("out.parquet");
    let out = out.to_str().unwrap();
    let score = |more: &[&str]| {
        let args = [&["score", "--input", sample, "--output", out][..], more].concat();
        failure(&args)
    };
    // Usage (2): a value no input makes right, as clap's own parse errors.
    let (code, stderr) = score(&["--a", "a", "--b", "b", "--threshold", "2"]);
    assert_eq!(
        code,
        Some(i32::from(crossflow_pipelines::EXIT_USAGE)),
        "{stderr}"
    );
    assert!(stderr.contains("--threshold"), "{stderr}");
    let (code, stderr) = failure(&["score", "--input", sample]);
    assert_eq!(code, Some(2), "clap: {stderr}");
    let (code, stderr) = failure(&["sql", "--table", "no-name", "SELECT 1"]);
    assert_eq!(code, Some(2), "a --table that is not NAME=PATH: {stderr}");
    let (code, stderr) = failure(&["enrich", "--config", "/nonexistent/enrich.toml"]);
    assert_eq!(code, Some(2), "a missing --config file: {stderr}");
    // Data (4): the input lacks what the flags name.
    let (code, stderr) = score(&["--a", "premise", "--b", "b"]);
    assert_eq!(
        code,
        Some(i32::from(crossflow_pipelines::EXIT_DATA)),
        "{stderr}"
    );
    assert!(stderr.contains("\"premise\""), "{stderr}");
    // Runtime (1): the model cannot be loaded.
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    crossflow_tests::copy_model_config(&sts_model_dir(), &model);
    std::fs::write(model.join("model.onnx"), b"not an onnx graph").unwrap();
    let model = model.to_str().unwrap();
    let (code, stderr) = score(&["--a", "a", "--b", "b", "--model", model]);
    assert_eq!(
        code,
        Some(i32::from(crossflow_pipelines::EXIT_RUNTIME)),
        "{stderr}"
    );
    assert!(stderr.contains("model.onnx"), "{stderr}");
    assert!(!Path::new(out).exists(), "no output after a failure");
}
