//! Flags and inputs that make no sense are refused with a message naming the
//! flag, column or file, never misread or met with a panic. Driven through
//! the real binary, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, StructArray};
use arrow::datatypes::{DataType, Field};
use crossflow_tests::{write_pairs_parquet, write_parquet};

use crossflow_tests::{assert_refused_with, run_crossflow as crossflow};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn pairs(dir: &Path) -> PathBuf {
    let path = dir.join("pairs.parquet");
    write_pairs_parquet(&path);
    path
}

#[test]
fn a_max_length_without_room_for_a_pair_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let output = dir.path().join("out.parquet");
    for short in ["0", "1", "2", "4"] {
        let run = crossflow(&[
            "--max-length",
            short,
            "score",
            "--input",
            s(&input),
            "--output",
            s(&output),
        ]);
        assert_refused_with(&run, 2, &["--max-length", "at least 5 tokens"]);
    }
    assert!(!output.exists());
}

#[test]
fn score_thresholds_off_the_model_scale_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let output = dir.path().join("out.parquet");
    for bad in ["NaN", "2", "-0.5", "inf"] {
        let threshold = format!("--threshold={bad}");
        let run = crossflow(&[
            "score",
            "--input",
            s(&input),
            "--output",
            s(&output),
            &threshold,
        ]);
        assert_refused_with(&run, 2, &["--threshold", "probability in [0, 1]"]);
    }
}

#[test]
fn dedupe_numbers_out_of_range_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let output = dir.path().join("out.parquet");
    let dedupe = |flag: &str| {
        crossflow(&[
            "dedupe",
            "--input",
            s(&input),
            "--text-column",
            "a",
            "--output",
            s(&output),
            flag,
        ])
    };
    for (flag, named) in [
        ("--min-cosine=NaN", "--min-cosine"),
        ("--min-cosine=1.5", "--min-cosine"),
        ("--threshold=NaN", "--threshold"),
        ("--threshold=7", "--threshold"),
        ("--top-k=0", "--top-k"),
    ] {
        assert_refused_with(&dedupe(flag), 2, &[named]);
    }
    assert!(!output.exists());
}

#[test]
fn a_batch_wait_that_would_stall_every_call_is_refused() {
    let run = crossflow(&["--batch-wait-ms", "60000", "sql", "SELECT 1"]);
    assert_refused_with(&run, 2, &["--batch-wait-ms", "0..=10000"]);
}

/// A rerank input: query ids, texts and a first-stage score per row.
fn rerank_input(dir: &Path, ids: &[Option<i64>], first: &[Option<f64>]) -> PathBuf {
    let path = dir.join("candidates.parquet");
    let n = ids.len();
    let text = |t: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(vec![t; n])) };
    write_parquet(
        &path,
        vec![
            ("query_id", Arc::new(Int64Array::from(ids.to_vec()))),
            ("query", text("A man is playing a guitar.")),
            (
                "doc_id",
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ),
            ("doc", text("A man plays the guitar.")),
            ("bm25", Arc::new(Float64Array::from(first.to_vec()))),
        ],
    );
    path
}

fn rerank(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let args = ["rerank", "--input", s(input), "--output", s(output)];
    crossflow(&[&args[..], extra].concat())
}

#[test]
fn rerank_weights_and_k_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = rerank_input(dir.path(), &[Some(1), Some(1)], &[Some(0.1), Some(0.2)]);
    let output = dir.path().join("top.parquet");
    for fusion in ["--fusion=2", "--fusion=NaN", "--fusion=-1", "--fusion=-inf"] {
        let run = rerank(&input, &output, &["--first-stage-column", "bm25", fusion]);
        assert_refused_with(&run, 2, &["--fusion", "[0, 1]"]);
    }
    let run = rerank(&input, &output, &["--top-k", "0"]);
    assert_refused_with(&run, 2, &["--top-k"]);
    assert!(!output.exists());
    let run = rerank(
        &input,
        &output,
        &["--first-stage-column", "bm25", "--fusion", "0.25"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn rerank_refuses_null_query_ids_and_bad_first_stage_scores() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("top.parquet");
    let null_id = rerank_input(dir.path(), &[Some(1), None, None], &[Some(0.1); 3]);
    let run = rerank(&null_id, &output, &[]);
    assert_refused_with(&run, 4, &["--query-id-column", "2 rows"]);
    for bad in [f64::NAN, f64::INFINITY] {
        let input = rerank_input(dir.path(), &[Some(1), Some(1)], &[Some(0.5), Some(bad)]);
        let run = rerank(
            &input,
            &output,
            &["--first-stage-column", "bm25", "--fusion", "0.5"],
        );
        assert_refused_with(&run, 4, &["--first-stage-column", "NaN or infinite"]);
    }
    let input = rerank_input(dir.path(), &[Some(1), Some(1)], &[Some(0.5), None]);
    let run = rerank(
        &input,
        &output,
        &["--first-stage-column", "bm25", "--fusion", "0.5"],
    );
    assert_refused_with(&run, 4, &["--first-stage-column", "null"]);
    assert!(!output.exists());
}

#[test]
fn rerank_names_the_flag_of_a_missing_or_mistyped_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = rerank_input(dir.path(), &[Some(1)], &[Some(0.1)]);
    let output = dir.path().join("top.parquet");
    let run = rerank(&input, &output, &["--doc-column", "passage"]);
    assert_refused_with(&run, 4, &["--doc-column \"passage\"", "no such column"]);
    let run = rerank(&input, &output, &["--query-column", "query_id"]);
    assert_refused_with(&run, 4, &["--query-column \"query_id\"", "Int64"]);
    let run = rerank(
        &input,
        &output,
        &["--first-stage-column", "doc", "--fusion", "0.5"],
    );
    assert_refused_with(&run, 4, &["--first-stage-column \"doc\"", "numeric"]);
}

#[test]
fn dedupe_names_a_nested_id_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.parquet");
    let inner = Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef;
    let ids = StructArray::from(vec![(
        Arc::new(Field::new("n", DataType::Int64, false)),
        inner,
    )]);
    write_parquet(
        &input,
        vec![
            ("key", Arc::new(ids) as ArrayRef),
            (
                "text",
                Arc::new(StringArray::from(vec!["one text", "another text"])),
            ),
        ],
    );
    let output = dir.path().join("out.parquet");
    let run = crossflow(&[
        "dedupe",
        "--input",
        s(&input),
        "--text-column",
        "text",
        "--id-column",
        "key",
        "--output",
        s(&output),
    ]);
    assert_refused_with(&run, 4, &["column \"key\"", "Struct"]);
}

#[test]
fn an_executor_whose_port_is_taken_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let run = crossflow(&["executor", "--scheduler", "127.0.0.1:9", "--bind", &bind]);
    assert_refused_with(&run, 1, &[&bind]);
}

/// A Parquet file whose string column `b` holds bytes that are not UTF-8.
fn not_utf8(dir: &Path) -> PathBuf {
    use arrow::buffer::{Buffer, OffsetBuffer};
    let bytes: &[u8] = b"fine\xff\xfe bytes";
    let offsets = OffsetBuffer::new(vec![0i32, 4, bytes.len() as i32].into());
    // SAFETY: not UTF-8 on purpose; the array is only written to a file,
    // which is what the test reads back through crossflow.
    let b = unsafe { StringArray::new_unchecked(offsets, Buffer::from(bytes), None) };
    let path = dir.join("bytes.parquet");
    write_parquet(
        &path,
        vec![
            ("a", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
            ("b", Arc::new(b)),
        ],
    );
    path
}

#[test]
fn text_that_is_not_utf8_is_named_by_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = not_utf8(dir.path());
    let output = dir.path().join("out.parquet");
    let run = crossflow(&["score", "--input", s(&input), "--output", s(&output)]);
    assert_refused_with(&run, 4, &["column \"b\"", "bytes.parquet", "UTF-8"]);
    let table = format!("t={}", input.display());
    let run = crossflow(&["sql", "-t", &table, "SELECT cross_score(a, b) FROM t"]);
    assert_refused_with(&run, 4, &["column \"b\"", "bytes.parquet", "UTF-8"]);
}

#[test]
fn a_json_table_that_cannot_be_read_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"a\": 1}\nnot json at all\n").unwrap();
    let table = format!("t={}", path.display());
    let run = crossflow(&["sql", "-t", &table, "SELECT * FROM t"]);
    assert_refused_with(&run, 1, &["broken.json"]);
}
