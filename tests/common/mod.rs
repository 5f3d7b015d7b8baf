//! Shared helpers of crossflow's end-to-end tests.

use std::path::{Path, PathBuf};

use crossflow::{CrossEncoder, EngineOptions};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The bundled STS / paraphrase cross-encoder.
pub fn sts_model_dir() -> PathBuf {
    repo_root().join("models/crossflow-sts-minilm-l6")
}

/// The bundled NLI cross-encoder.
pub fn nli_model_dir() -> PathBuf {
    repo_root().join("models/crossflow-nli-minilm-l6")
}

/// The bundled bi-encoder.
pub fn bi_encoder_dir() -> PathBuf {
    repo_root().join("models/all-minilm-l6-v2")
}

/// Loads a model with default options, panicking with the error's message.
pub fn load(dir: &Path) -> CrossEncoder {
    CrossEncoder::load(dir, &EngineOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// Copies a model directory (without its ONNX files) into `target`, for tests
/// that break one file.
pub fn copy_model_config(from: &Path, target: &Path) {
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "config_sentence_transformers.json",
    ] {
        std::fs::copy(from.join(name), target.join(name)).expect("copy model file");
    }
}

/// Pairs used by the SQL and CLI tests: real sentences, an empty text and nulls.
pub const PAIRS: &[(i64, Option<&str>, Option<&str>)] = &[
    (
        1,
        Some("A man is playing a guitar."),
        Some("A man plays an instrument."),
    ),
    (
        2,
        Some("A man is playing a guitar."),
        Some("The stock market fell sharply today."),
    ),
    (
        3,
        Some("Two dogs run through a field."),
        Some("Dogs are running outside."),
    ),
    (
        4,
        Some("A woman is slicing an onion."),
        Some("A woman is cutting vegetables."),
    ),
    (5, Some(""), Some("An empty text is a valid text.")),
    (6, None, Some("A null text gives a null score.")),
    (7, Some("Children play in the snow."), None),
    (
        8,
        Some("A man is sleeping."),
        Some("A man is awake and running a marathon."),
    ),
];

/// Writes named columns as one Parquet file.
pub fn write_parquet(path: &Path, columns: Vec<(&str, datafusion::arrow::array::ArrayRef)>) {
    let batch =
        datafusion::arrow::record_batch::RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// Writes [`PAIRS`] as Parquet with columns `id`, `a`, `b`.
pub fn write_pairs_parquet(path: &Path) {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    write_parquet(
        path,
        vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(PAIRS.iter().map(|p| p.0))),
            ),
            (
                "a",
                Arc::new(StringArray::from_iter(PAIRS.iter().map(|p| p.1))),
            ),
            (
                "b",
                Arc::new(StringArray::from_iter(PAIRS.iter().map(|p| p.2))),
            ),
        ],
    );
}

/// Runs one statement as `crossflow sql` does and concatenates its result
/// (an empty batch when there is none), panicking with the statement on error.
pub async fn query(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> datafusion::arrow::record_batch::RecordBatch {
    use datafusion::arrow::record_batch::RecordBatch;
    let batches = crossflow_pipelines::sql::execute(ctx, &[sql.to_string()])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .remove(0);
    match batches.first() {
        Some(first) => {
            datafusion::arrow::compute::concat_batches(&first.schema(), &batches).expect("concat")
        }
        None => RecordBatch::new_empty(std::sync::Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )),
    }
}

/// Reads a whole Parquet file into one batch.
pub fn read_parquet(path: &Path) -> datafusion::arrow::record_batch::RecordBatch {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

pub mod broker;
pub mod cluster_nodes;
pub mod dedupe_io;
pub mod dedupe_stream_io;
pub mod enrich_io;
pub mod fake_hub;
pub mod hub_repo;
pub mod parity_reference;
pub mod search_io;

/// `n` distinct real pairs: SNLI validation premise/hypothesis pairs from ../shared/data.
pub fn snli_pairs(n: usize) -> Vec<(String, String)> {
    let path = repo_root().join("../shared/data/snli/validation.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    (0..)
        .map(|i| {
            (
                rows[i % rows.len()].0.clone(),
                rows[(i + i / rows.len()) % rows.len()].1.clone(),
            )
        })
        .filter(|p| seen.insert(p.clone()))
        .take(n)
        .collect()
}

/// Runs the workspace's `crossflow` binary with `args` to its end.
pub fn run_crossflow(args: &[&str]) -> std::process::Output {
    std::process::Command::new(crossflow_binary())
        .args(args)
        .output()
        .expect("run crossflow")
}

/// Fails unless a run exited with `code` and an error containing every one of `words`.
pub fn assert_refused_with(output: &std::process::Output, code: i32, words: &[&str]) {
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{text}");
    for word in words {
        assert!(text.contains(word), "{word:?} not in: {text}");
    }
}

/// The `crossflow` binary of the workspace build (`cargo build` runs before the tests).
pub fn crossflow_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let target_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = target_dir.join("crossflow");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build` before the tests",
        bin.display()
    );
    bin
}
