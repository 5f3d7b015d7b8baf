//! `crossflow index` and `crossflow search` on TREC-QA dev pooled into one
//! corpus: exact candidates against a brute-force cosine ranking, the
//! cross-encoder's scores against `crossflow score`, the order against
//! `crossflow rerank`, a reused index against `--corpus`, and refusals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type, UInt64Type};
use clap::Parser;
use crossflow::{BiEncoder, EngineOptions};
use crossflow_pipelines::cli::{Cli, run};
use crossflow_tests::{
    assert_refused_with, bi_encoder_dir, read_parquet, repo_root, run_crossflow,
};
use datafusion::prelude::{CsvReadOptions, SessionContext};

/// Candidates per query in these tests.
const TOP_K: usize = 20;

/// TREC-QA dev as `corpus.parquet` (`doc_id`, `doc`: every distinct answer
/// sentence) and `queries.parquet` (`query_id`, `query`: every question).
async fn trec_dev(dir: &Path) -> (PathBuf, PathBuf) {
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
async fn copy(ctx: &SessionContext, sql: &str, path: &Path) {
    let copy = format!("COPY ({sql}) TO '{}' STORED AS PARQUET", path.display());
    ctx.sql(&copy).await.unwrap().collect().await.unwrap();
}

/// Runs `crossflow COMMAND ARGS` in this process.
async fn crossflow(command: &str, args: &[&str]) {
    let cli = Cli::try_parse_from(
        ["crossflow", command]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .unwrap();
    run(cli, &mut Vec::new())
        .await
        .unwrap_or_else(|e| panic!("crossflow {command} {args:?}: {e}"));
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A row of a search output: (doc_id, bi_score, cross_score, score, rank).
type Row = (i64, f32, f32, f64, u64);

/// Each query's rows of a search output.
fn by_query(batch: &RecordBatch) -> HashMap<i64, Vec<Row>> {
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
fn brute_force(corpus: &Path, queries: &Path) -> HashMap<i64, Vec<(i64, f32)>> {
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

#[tokio::test]
async fn exact_candidates_are_the_brute_force_ranking_scored_as_score_and_ranked_as_rerank() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = trec_dev(dir.path()).await;
    let index = dir.path().join("index");
    crossflow("index", &["--corpus", s(&corpus), "--out", s(&index)]).await;

    // Every candidate with its scores: top-n = top-k, the cross-encoder alone.
    let all = dir.path().join("all.parquet");
    let k = TOP_K.to_string();
    let common = [
        "--queries",
        s(&queries),
        "--index",
        s(&index),
        "--top-k",
        &k,
    ];
    let mut args = common.to_vec();
    args.extend([
        "--top-n",
        &k,
        "--fusion",
        "1",
        "--search",
        "exact",
        "--output",
        s(&all),
    ]);
    crossflow("search", &args).await;
    let found = by_query(&read_parquet(&all));
    let truth = brute_force(&corpus, &queries);
    assert_eq!(found.len(), truth.len(), "every query has rows");
    for (query, rows) in &found {
        let expected = &truth[query][..TOP_K];
        let mut cosines: Vec<f32> = rows.iter().map(|r| r.1).collect();
        cosines.sort_by(|x, y| y.total_cmp(x));
        for (got, (doc, want)) in cosines.iter().zip(expected) {
            assert!(
                (got - want).abs() < 1e-4,
                "query {query} doc {doc}: {got} vs {want}"
            );
        }
        // The same documents, but where a near-tie crosses the k-th place.
        let boundary = truth[query][TOP_K].1;
        for (doc, cosine) in expected.iter().filter(|(_, c)| c - boundary > 1e-4) {
            assert!(
                rows.iter().any(|r| r.0 == *doc),
                "query {query}: doc {doc} ({cosine}) missing"
            );
        }
        // Ranks 1..=k by the cross-encoder's score.
        let mut ranked = rows.clone();
        ranked.sort_by_key(|r| r.4);
        assert_eq!(
            ranked.iter().map(|r| r.4).collect::<Vec<_>>(),
            (1..=TOP_K as u64).collect::<Vec<_>>()
        );
        assert!(
            ranked.windows(2).all(|w| w[0].2 >= w[1].2),
            "query {query}: {ranked:?}"
        );
        assert!(
            ranked.iter().all(|r| f64::from(r.2) == r.3),
            "score = cross_score at --fusion 1"
        );
    }

    // cross_score is what `crossflow score` gives the same (query, doc) pair.
    let ctx = SessionContext::new().enable_url_table();
    let pairs = dir.path().join("pairs.parquet");
    let candidates = dir.path().join("candidates.parquet");
    let read = format!("'{}'", s(&all));
    copy(
        &ctx,
        &format!("SELECT query_id, doc_id, query, doc FROM {read} ORDER BY query_id, doc_id"),
        &pairs,
    )
    .await;
    copy(
        &ctx,
        &format!("SELECT query_id, query, doc_id, doc, bi_score FROM {read}"),
        &candidates,
    )
    .await;
    let scored = dir.path().join("scored.parquet");
    crossflow(
        "score",
        &[
            "--input",
            s(&pairs),
            "--a",
            "query",
            "--b",
            "doc",
            "--output",
            s(&scored),
        ],
    )
    .await;
    let scored = read_parquet(&scored);
    let column = |name: &str| scored.column_by_name(name).unwrap().clone();
    let (q, d, c) = (column("query_id"), column("doc_id"), column("cross_score"));
    for r in 0..scored.num_rows() {
        let query = q.as_primitive::<Int64Type>().value(r);
        let doc = d.as_primitive::<Int64Type>().value(r);
        let row = found[&query].iter().find(|x| x.0 == doc).unwrap();
        let want = c.as_primitive::<Float32Type>().value(r);
        assert!(
            (row.2 - want).abs() <= 1e-6,
            "query {query} doc {doc}: {} vs {want}",
            row.2
        );
    }

    // Fused and cut to the top 5: the order `crossflow rerank` gives the same candidates.
    let (top, reranked) = (
        dir.path().join("top.parquet"),
        dir.path().join("reranked.parquet"),
    );
    let mut args = common.to_vec();
    args.extend([
        "--top-n",
        "5",
        "--fusion",
        "0.3",
        "--search",
        "exact",
        "--output",
        s(&top),
    ]);
    crossflow("search", &args).await;
    crossflow(
        "rerank",
        &[
            "--input",
            s(&candidates),
            "--output",
            s(&reranked),
            "--top-k",
            "5",
            "--first-stage-column",
            "bi_score",
            "--fusion",
            "0.3",
        ],
    )
    .await;
    let (top, reranked) = (
        by_query(&read_parquet(&top)),
        by_query(&read_parquet(&reranked)),
    );
    assert_eq!(top.len(), found.len());
    for (query, rows) in &top {
        let ids = |rows: &[Row]| rows.iter().map(|r| (r.4, r.0)).collect::<Vec<_>>();
        assert_eq!(rows.len(), 5);
        assert_eq!(ids(rows), ids(&reranked[query]), "query {query}");
    }
}

#[tokio::test]
async fn a_reused_index_equals_corpus_and_refuses_another_model_or_a_changed_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = trec_dev(dir.path()).await;
    let index = dir.path().join("index");
    crossflow("index", &["--corpus", s(&corpus), "--out", s(&index)]).await;
    let (reused, fresh) = (
        dir.path().join("reused.parquet"),
        dir.path().join("fresh.parquet"),
    );
    let common = [
        "--queries",
        s(&queries),
        "--top-k",
        "10",
        "--top-n",
        "3",
        "--search",
        "ivf",
        "--ivf-probes",
        "8",
    ];
    let mut args = common.to_vec();
    args.extend(["--index", s(&index), "--output", s(&reused)]);
    crossflow("search", &args).await;
    let mut args = common.to_vec();
    args.extend(["--corpus", s(&corpus), "--output", s(&fresh)]);
    crossflow("search", &args).await;
    assert_eq!(read_parquet(&reused), read_parquet(&fresh));

    let other = other_bi_encoder(dir.path());
    let out = dir.path().join("refused.parquet");
    let search = |extra: &[&str]| {
        let mut args = vec![
            "search",
            "--queries",
            s(&queries),
            "--index",
            s(&index),
            "--output",
            s(&out),
        ];
        args.extend(extra);
        run_crossflow(&args)
    };
    assert_refused_with(
        &search(&["--bi-encoder", s(&other)]),
        2,
        &["built with bi-encoder", "fingerprint"],
    );
    assert!(!out.exists());

    // The corpus touched: the same contents, accepted; changed: refused.
    let bytes = std::fs::read(&corpus).unwrap();
    std::fs::write(&corpus, &bytes).unwrap();
    let accepted = search(&[]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    std::fs::remove_file(&out).unwrap();
    let ctx = SessionContext::new().enable_url_table();
    let changed = dir.path().join("changed.parquet");
    copy(
        &ctx,
        &format!("SELECT doc_id, doc FROM '{}' WHERE doc_id <> 7", s(&corpus)),
        &changed,
    )
    .await;
    std::fs::rename(&changed, &corpus).unwrap();
    assert_refused_with(
        &search(&[]),
        4,
        &["corpus changed since it was indexed", "crossflow index"],
    );
    assert!(!out.exists());
}

/// The bundled bi-encoder with one file changed: another fingerprint.
fn other_bi_encoder(dir: &Path) -> PathBuf {
    let other = dir.join("other-bi-encoder");
    copy_dir(&bi_encoder_dir(), &other);
    let config = other.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n")).unwrap();
    other
}

fn copy_dir(from: &Path, to: &Path) {
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

#[tokio::test]
async fn bad_inputs_are_refused_naming_the_flag_and_null_texts_get_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new().enable_url_table();
    let path = |name: &str| dir.path().join(name);
    let write = |sql: &'static str, name: &'static str| {
        let (ctx, target) = (&ctx, path(name));
        async move { copy(ctx, sql, &target).await }
    };
    write("SELECT * FROM (VALUES (1, 'A man plays the guitar.'), (2, NULL), (3, 'A chef cooks pasta.'), (4, '  ')) AS t(doc_id, doc)", "corpus.parquet").await;
    write("SELECT * FROM (VALUES (1, 'guitar music'), (2, NULL), (3, 'cooking')) AS t(query_id, query)", "queries.parquet").await;
    write(
        "SELECT * FROM (VALUES (1, 'one'), (1, 'two')) AS t(doc_id, doc)",
        "twice.parquet",
    )
    .await;
    let (corpus, queries, index, out) = (
        path("corpus.parquet"),
        path("queries.parquet"),
        path("index"),
        path("top.parquet"),
    );

    let refused = run_crossflow(&[
        "index",
        "--corpus",
        s(&corpus),
        "--doc-column",
        "text",
        "--out",
        s(&index),
    ]);
    assert_refused_with(&refused, 4, &["--doc-column \"text\"", "no such column"]);
    let refused = run_crossflow(&[
        "index",
        "--corpus",
        s(&path("twice.parquet")),
        "--out",
        s(&index),
    ]);
    assert_refused_with(&refused, 4, &["--doc-id-column", "\"1\"", "unique"]);
    assert!(!index.exists(), "nothing written");
    std::fs::create_dir(path("other")).unwrap();
    std::fs::write(path("other/keep.txt"), "kept").unwrap();
    // Another tool's manifest does not make a directory an index to replace.
    std::fs::write(path("other/manifest.json"), "{}").unwrap();
    let refused = run_crossflow(&["index", "--corpus", s(&corpus), "--out", s(&path("other"))]);
    assert_refused_with(&refused, 2, &["--out", "not a crossflow index"]);
    assert_eq!(
        std::fs::read_to_string(path("other/keep.txt")).unwrap(),
        "kept"
    );

    crossflow("index", &["--corpus", s(&corpus), "--out", s(&index)]).await;
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        (manifest["docs"].as_u64(), manifest["indexed"].as_u64()),
        (Some(4), Some(2))
    );
    // Rebuilt in place: the index is replaced.
    crossflow("index", &["--corpus", s(&corpus), "--out", s(&index)]).await;

    let refused = run_crossflow(&[
        "search",
        "--queries",
        s(&queries),
        "--index",
        s(&index),
        "--query-column",
        "q",
        "--output",
        s(&out),
    ]);
    assert_refused_with(&refused, 4, &["--query-column \"q\"", "query_id, query"]);
    let refused = run_crossflow(&[
        "search",
        "--queries",
        s(&queries),
        "--index",
        s(&index),
        "--top-k",
        "2",
        "--top-n",
        "3",
        "--output",
        s(&out),
    ]);
    assert_refused_with(&refused, 2, &["--top-n 3 above --top-k 2"]);
    let refused = run_crossflow(&[
        "search",
        "--queries",
        s(&queries),
        "--index",
        s(&index),
        "--output",
        s(&corpus),
    ]);
    assert_refused_with(&refused, 2, &["--output", "would overwrite the input"]);
    assert!(!out.exists());

    crossflow(
        "search",
        &[
            "--queries",
            s(&queries),
            "--index",
            s(&index),
            "--top-k",
            "5",
            "--top-n",
            "5",
            "--output",
            s(&out),
        ],
    )
    .await;
    let rows = by_query(&read_parquet(&out));
    let mut queries_found: Vec<i64> = rows.keys().copied().collect();
    queries_found.sort();
    assert_eq!(queries_found, [1, 3], "a query without a text has no rows");
    for hits in rows.values() {
        let mut docs: Vec<i64> = hits.iter().map(|r| r.0).collect();
        docs.sort();
        assert_eq!(
            docs,
            [1, 3],
            "documents without a text are never candidates"
        );
    }
    assert_eq!(
        rows[&1].iter().find(|r| r.4 == 1).unwrap().0,
        1,
        "guitar first"
    );
    assert_eq!(
        rows[&3].iter().find(|r| r.4 == 1).unwrap().0,
        3,
        "cooking first"
    );
}

#[tokio::test]
async fn the_sql_functions_give_what_the_command_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = trec_dev(dir.path()).await;
    let index = dir.path().join("index");
    crossflow("index", &["--corpus", s(&corpus), "--out", s(&index)]).await;
    let written = dir.path().join("top.parquet");
    let args = [
        "--queries",
        s(&queries),
        "--index",
        s(&index),
        "--top-k",
        "20",
        "--top-n",
        "5",
        "--fusion",
        "0.3",
        "--output",
        s(&written),
    ];
    crossflow("search", &args).await;
    let written = read_parquet(&written);

    let models = crossflow_pipelines::models::ModelArgs::default()
        .load_model_set(None)
        .unwrap();
    let table = format!("questions={}", s(&queries));
    let ctx = crossflow_pipelines::sql::session(&models, &[table])
        .await
        .unwrap();
    let sql = format!(
        "SELECT * FROM search_queries('{}', 'questions', 20, 5, 0.3)",
        s(&index)
    );
    let found = crossflow_tests::query(&ctx, &sql).await;
    assert_eq!(found, written, "search_queries = crossflow search");

    // One query by its text: the same rows as that query's in the file.
    let first = written.slice(0, 5);
    let question = first
        .column_by_name("query")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let sql = format!(
        "SELECT doc_id, cross_score, rank FROM search('{}', '{}', 20, 5, 0.3)",
        s(&index),
        question.replace('\'', "''")
    );
    let one = crossflow_tests::query(&ctx, &sql).await;
    for name in ["doc_id", "cross_score", "rank"] {
        assert_eq!(
            one.column_by_name(name),
            first.column_by_name(name),
            "{name}"
        );
    }

    // Arguments out of range, and an index of another bi-encoder: refused.
    let error = ctx
        .sql(&format!(
            "SELECT * FROM search('{}', 'x', 5, 10)",
            s(&index)
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("top_n at most top_k"), "{error}");
    let other = other_bi_encoder(dir.path());
    let refused = run_crossflow(&[
        "sql",
        "--bi-encoder",
        s(&other),
        &format!("SELECT * FROM search('{}', 'x', 5, 5)", s(&index)),
    ]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("built with bi-encoder"),
        "{text}"
    );
}
