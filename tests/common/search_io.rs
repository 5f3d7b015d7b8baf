//! Inputs and readers of the `crossflow index` / `crossflow search` tests:
//! TREC-QA dev pooled into one corpus, the command run in this process, a
//! search output by query, a brute-force cosine ranking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use crossflow::{BiEncoder, EngineOptions};
use crossflow_pipelines::cli::{Cli, run};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, Float64Type, Int64Type, UInt64Type};
use datafusion::prelude::{CsvReadOptions, SessionContext};

use crate::{bi_encoder_dir, read_parquet, repo_root};

/// TREC-QA dev as `corpus.parquet` (`doc_id`, `doc`: every distinct answer
/// sentence) and `queries.parquet` (`query_id`, `query`: every question).
pub async fn trec_dev(dir: &Path) -> (PathBuf, PathBuf) {
    let ctx = SessionContext::new().enable_url_table();
    let csv = repo_root().join("../shared/data/trecqa-wang/dev.csv");
    ctx.register_csv("dev", csv.to_str().unwrap(), CsvReadOptions::new())
        .await
        .unwrap();
    let (corpus, queries) = (dir.join("corpus.parquet"), dir.join("queries.parquet"));
    for (sql, path) in [
        (
            "SELECT CAST(ROW_NUMBER() OVER (ORDER BY atext) AS BIGINT) AS doc_id, atext AS doc \
             FROM (SELECT DISTINCT atext FROM dev)",
            &corpus,
        ),
        (
            "SELECT CAST(ROW_NUMBER() OVER (ORDER BY qtext) AS BIGINT) AS query_id, qtext AS query \
             FROM (SELECT DISTINCT qtext FROM dev)",
            &queries,
        ),
    ] {
        copy(&ctx, sql, path).await;
    }
    (corpus, queries)
}

/// Writes the result of `sql` to the Parquet file `path`.
pub async fn copy(ctx: &SessionContext, sql: &str, path: &Path) {
    let copy = format!("COPY ({sql}) TO '{}' STORED AS PARQUET", path.display());
    ctx.sql(&copy).await.unwrap().collect().await.unwrap();
}

/// Runs the `crossflow` command line `line` (words split at whitespace) in
/// this process, panicking on error.
pub async fn crossflow(line: &str) {
    let words = std::iter::once("crossflow").chain(line.split_whitespace());
    let cli = Cli::try_parse_from(words).unwrap();
    run(cli, &mut Vec::new())
        .await
        .unwrap_or_else(|e| panic!("crossflow {line}: {e}"));
}

/// Runs the `crossflow` binary on the command line `line` (words split at
/// whitespace) to its end.
pub fn crossflow_process(line: &str) -> std::process::Output {
    crate::run_crossflow(&line.split_whitespace().collect::<Vec<_>>())
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A row of a search output: (doc_id, bi_score, cross_score, score, rank).
pub type Row = (i64, f32, f32, f64, u64);

/// Each query's rows of a search output.
pub fn by_query(batch: &RecordBatch) -> HashMap<i64, Vec<Row>> {
    let column = |name: &str| batch.column_by_name(name).unwrap();
    let query = column("query_id").as_primitive::<Int64Type>();
    let doc = column("doc_id").as_primitive::<Int64Type>();
    let bi = column("bi_score").as_primitive::<Float32Type>();
    let cross = column("cross_score").as_primitive::<Float32Type>();
    let score = column("score").as_primitive::<Float64Type>();
    let rank = column("rank").as_primitive::<UInt64Type>();
    let mut out: HashMap<i64, Vec<_>> = HashMap::new();
    for r in 0..batch.num_rows() {
        out.entry(query.value(r)).or_default().push((
            doc.value(r),
            bi.value(r),
            cross.value(r),
            score.value(r),
            rank.value(r),
        ));
    }
    out
}

/// Brute force: every query's cosine with every document, by the bi-encoder
/// loaded here; per query, (doc_id, cosine) best first.
pub fn brute_force(corpus: &Path, queries: &Path) -> HashMap<i64, Vec<(i64, f32)>> {
    let model = BiEncoder::load(bi_encoder_dir(), &EngineOptions::default()).unwrap();
    let texts = |path: &Path, id: &str, text: &str| -> (Vec<i64>, Vec<String>) {
        let batch = read_parquet(path);
        let ids = batch
            .column_by_name(id)
            .unwrap()
            .as_primitive::<Int64Type>();
        let texts = batch.column_by_name(text).unwrap().as_string::<i32>();
        (
            ids.values().to_vec(),
            texts.iter().map(|t| t.unwrap().to_string()).collect(),
        )
    };
    let (doc_ids, docs) = texts(corpus, "doc_id", "doc");
    let (query_ids, questions) = texts(queries, "query_id", "query");
    let embed = |texts: &[String]| {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        model.embed_texts(&refs).unwrap()
    };
    let (d, q) = (embed(&docs), embed(&questions));
    let dim = model.dimension();
    let mut out = HashMap::new();
    for (i, &query) in query_ids.iter().enumerate() {
        let mut ranked: Vec<(i64, f32)> = doc_ids
            .iter()
            .enumerate()
            .map(|(j, &doc)| {
                let dot = (0..dim).map(|x| q[i * dim + x] * d[j * dim + x]).sum();
                (doc, dot)
            })
            .collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        out.insert(query, ranked);
    }
    out
}

/// The bundled bi-encoder with one file changed: another fingerprint.
pub fn other_bi_encoder(dir: &Path) -> PathBuf {
    let other = dir.join("other-bi-encoder");
    copy_dir(&bi_encoder_dir(), &other);
    let config = other.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n")).unwrap();
    other
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), &target).unwrap()),
        }
    }
}

/// [`trec_dev`] and its index, built by `crossflow index` in `dir/index`:
/// (corpus, queries, index).
pub async fn indexed_trec_dev(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (corpus, queries) = trec_dev(dir).await;
    let index = dir.join("index");
    crossflow(&format!(
        "index --corpus {} --out {}",
        s(&corpus),
        s(&index)
    ))
    .await;
    (corpus, queries, index)
}
