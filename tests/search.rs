//! `crossflow index` and `crossflow search` on TREC-QA dev pooled into one
//! corpus: exact candidates against a brute-force cosine ranking, the
//! cross-encoder's scores against `crossflow score`, the order against
//! `crossflow rerank`, a reused index against `--corpus`, and refusals.

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Int64Type};
use crossflow_tests::search_io::{
    Row, brute_force, by_query, copy, crossflow, crossflow_process, indexed_trec_dev,
    other_bi_encoder, s,
};
use crossflow_tests::{assert_refused_with, read_parquet, run_crossflow};
use datafusion::prelude::SessionContext;

/// Candidates per query in these tests.
const TOP_K: usize = 20;

#[tokio::test]
async fn exact_candidates_are_the_brute_force_ranking_scored_as_score_and_ranked_as_rerank() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries, index) = indexed_trec_dev(dir.path()).await;
    let path = |name: &str| dir.path().join(name);
    let search = format!(
        "search --queries {} --index {} --top-k {TOP_K}",
        s(&queries),
        s(&index)
    );

    // Every candidate with its scores: top-n = top-k, the cross-encoder alone.
    let all = path("all.parquet");
    let options = format!(
        "--top-n {TOP_K} --fusion 1 --search exact --output {}",
        s(&all)
    );
    crossflow(&format!("{search} {options}")).await;
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
            let kept = rows.iter().any(|r| r.0 == *doc);
            assert!(kept, "query {query}: doc {doc} ({cosine}) missing");
        }
        // Ranks 1..=k by the cross-encoder's score.
        let mut ranked = rows.clone();
        ranked.sort_by_key(|r| r.4);
        let ranks: Vec<u64> = ranked.iter().map(|r| r.4).collect();
        assert_eq!(ranks, (1..=TOP_K as u64).collect::<Vec<_>>());
        assert!(
            ranked.windows(2).all(|w| w[0].2 >= w[1].2),
            "query {query}: {ranked:?}"
        );
        let unfused = ranked.iter().all(|r| f64::from(r.2) == r.3);
        assert!(unfused, "score = cross_score at --fusion 1");
    }

    // cross_score is what `crossflow score` gives the same (query, doc) pair.
    let ctx = SessionContext::new().enable_url_table();
    let (pairs, candidates, scored) = (
        path("pairs.parquet"),
        path("candidates.parquet"),
        path("scored.parquet"),
    );
    let read = format!("'{}'", s(&all));
    let sql = format!("SELECT query_id, doc_id, query, doc FROM {read} ORDER BY query_id, doc_id");
    copy(&ctx, &sql, &pairs).await;
    let sql = format!("SELECT query_id, query, doc_id, doc, bi_score FROM {read}");
    copy(&ctx, &sql, &candidates).await;
    crossflow(&format!(
        "score --input {} --a query --b doc --output {}",
        s(&pairs),
        s(&scored)
    ))
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
    let (top, reranked) = (path("top.parquet"), path("reranked.parquet"));
    let options = format!("--top-n 5 --fusion 0.3 --search exact --output {}", s(&top));
    crossflow(&format!("{search} {options}")).await;
    let rerank = format!(
        "rerank --input {} --output {}",
        s(&candidates),
        s(&reranked)
    );
    crossflow(&format!(
        "{rerank} --top-k 5 --first-stage-column bi_score --fusion 0.3"
    ))
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
    let (corpus, queries, index) = indexed_trec_dev(dir.path()).await;
    let (reused, fresh) = (
        dir.path().join("reused.parquet"),
        dir.path().join("fresh.parquet"),
    );
    let search = format!(
        "search --queries {} --top-k 10 --top-n 3 --search ivf --ivf-probes 8",
        s(&queries)
    );
    crossflow(&format!(
        "{search} --index {} --output {}",
        s(&index),
        s(&reused)
    ))
    .await;
    crossflow(&format!(
        "{search} --corpus {} --output {}",
        s(&corpus),
        s(&fresh)
    ))
    .await;
    assert_eq!(read_parquet(&reused), read_parquet(&fresh));

    let other = other_bi_encoder(dir.path());
    let out = dir.path().join("refused.parquet");
    let search = format!(
        "search --queries {} --index {} --output {}",
        s(&queries),
        s(&index),
        s(&out)
    );
    let refused = crossflow_process(&format!("{search} --bi-encoder {}", s(&other)));
    assert_refused_with(&refused, 2, &["built with bi-encoder", "fingerprint"]);
    assert!(!out.exists());

    // The corpus touched: the same contents, accepted; changed: refused.
    let bytes = std::fs::read(&corpus).unwrap();
    std::fs::write(&corpus, &bytes).unwrap();
    let accepted = crossflow_process(&search);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    std::fs::remove_file(&out).unwrap();
    let ctx = SessionContext::new().enable_url_table();
    let changed = dir.path().join("changed.parquet");
    let sql = format!("SELECT doc_id, doc FROM '{}' WHERE doc_id <> 7", s(&corpus));
    copy(&ctx, &sql, &changed).await;
    std::fs::rename(&changed, &corpus).unwrap();
    let refused = crossflow_process(&search);
    assert_refused_with(
        &refused,
        4,
        &["corpus changed since it was indexed", "crossflow index"],
    );
    assert!(!out.exists());
}

#[tokio::test]
async fn bad_inputs_are_refused_naming_the_flag_and_null_texts_get_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new().enable_url_table();
    let path = |name: &str| dir.path().join(name);
    for (rows, columns, name) in [
        (
            "(1, 'A man plays the guitar.'), (2, NULL), (3, 'A chef cooks pasta.'), (4, '  ')",
            "doc_id, doc",
            "corpus.parquet",
        ),
        (
            "(1, 'guitar music'), (2, NULL), (3, 'cooking')",
            "query_id, query",
            "queries.parquet",
        ),
        ("(1, 'one'), (1, 'two')", "doc_id, doc", "twice.parquet"),
    ] {
        copy(
            &ctx,
            &format!("SELECT * FROM (VALUES {rows}) AS t({columns})"),
            &path(name),
        )
        .await;
    }
    let (corpus, index, out) = (path("corpus.parquet"), path("index"), path("top.parquet"));
    let (corpus, twice) = (s(&corpus), path("twice.parquet"));
    let index_into = |out: &str| format!("index --corpus {corpus} --out {out}");

    let refused = crossflow_process(&format!("{} --doc-column text", index_into(s(&index))));
    assert_refused_with(&refused, 4, &["--doc-column \"text\"", "no such column"]);
    let refused = crossflow_process(&format!("index --corpus {} --out {}", s(&twice), s(&index)));
    assert_refused_with(&refused, 4, &["--doc-id-column", "\"1\"", "unique"]);
    assert!(!index.exists(), "nothing written");
    std::fs::create_dir(path("other")).unwrap();
    std::fs::write(path("other/keep.txt"), "kept").unwrap();
    // Another tool's manifest does not make a directory an index to replace.
    std::fs::write(path("other/manifest.json"), "{}").unwrap();
    let refused = crossflow_process(&index_into(s(&path("other"))));
    assert_refused_with(&refused, 2, &["--out", "not a crossflow index"]);
    assert_eq!(
        std::fs::read_to_string(path("other/keep.txt")).unwrap(),
        "kept"
    );

    crossflow(&index_into(s(&index))).await;
    let manifest = std::fs::read_to_string(index.join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let counts = (manifest["docs"].as_u64(), manifest["indexed"].as_u64());
    assert_eq!(counts, (Some(4), Some(2)));
    // Rebuilt in place: the index is replaced.
    crossflow(&index_into(s(&index))).await;

    let queries = path("queries.parquet");
    let search = format!("search --queries {} --index {}", s(&queries), s(&index));
    let refused = crossflow_process(&format!("{search} --query-column q --output {}", s(&out)));
    assert_refused_with(&refused, 4, &["--query-column \"q\"", "query_id, query"]);
    let refused = crossflow_process(&format!(
        "{search} --top-k 2 --top-n 3 --output {}",
        s(&out)
    ));
    assert_refused_with(&refused, 2, &["--top-n 3 above --top-k 2"]);
    let refused = crossflow_process(&format!("{search} --output {corpus}"));
    assert_refused_with(&refused, 2, &["--output", "would overwrite the input"]);
    assert!(!out.exists());

    crossflow(&format!(
        "{search} --top-k 5 --top-n 5 --output {}",
        s(&out)
    ))
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
    let best = |query: i64| rows[&query].iter().find(|r| r.4 == 1).unwrap().0;
    assert_eq!(best(1), 1, "guitar first");
    assert_eq!(best(3), 3, "cooking first");
}

#[tokio::test]
async fn the_sql_functions_give_what_the_command_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, queries, index) = indexed_trec_dev(dir.path()).await;
    let written = dir.path().join("top.parquet");
    let search = format!("search --queries {} --index {}", s(&queries), s(&index));
    crossflow(&format!(
        "{search} --top-k 20 --top-n 5 --fusion 0.3 --output {}",
        s(&written)
    ))
    .await;
    let written = read_parquet(&written);

    let models = crossflow_pipelines::models::ModelArgs::default()
        .load_model_set(None)
        .unwrap();
    let table = format!("questions={}", s(&queries));
    let ctx = crossflow_pipelines::sql::session(&models, &[table])
        .await
        .unwrap();
    let index = s(&index);
    let sql = format!("SELECT * FROM search_queries('{index}', 'questions', 20, 5, 0.3)");
    let found = crossflow_tests::query(&ctx, &sql).await;
    assert_eq!(found, written, "search_queries = crossflow search");

    // One query by its text: the same rows as that query's in the file.
    let first = written.slice(0, 5);
    let question = first
        .column_by_name("query")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let question = question.replace('\'', "''");
    let sql = format!(
        "SELECT doc_id, cross_score, rank FROM search('{index}', '{question}', 20, 5, 0.3)"
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
    let sql = format!("SELECT * FROM search('{index}', 'x', 5, 10)");
    let error = ctx.sql(&sql).await.unwrap_err().to_string();
    assert!(error.contains("top_n at most top_k"), "{error}");
    let other = other_bi_encoder(dir.path());
    let sql = format!("SELECT * FROM search('{index}', 'x', 5, 5)");
    let refused = run_crossflow(&["sql", "--bi-encoder", s(&other), &sql]);
    let text = String::from_utf8_lossy(&refused.stderr);
    let named = text.contains("built with bi-encoder");
    assert!(!refused.status.success() && named, "{text}");
}
