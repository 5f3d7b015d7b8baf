//! `crossflow dedupe` end to end on real models.

use std::path::Path;

use arrow::array::Array;
use crossflow_tests::dedupe_io::*;
use crossflow_tests::read_parquet;

const TEXTS: &[(i64, Option<&str>)] = &[
    (10, Some("A man is playing a guitar.")),
    (11, Some("a man is  playing a GUITAR.")),
    (12, Some("A man plays the guitar.")),
    (13, Some("The stock market fell sharply on Monday.")),
    (14, Some("Stocks dropped steeply on Monday.")),
    (15, Some("A woman is slicing an onion in the kitchen.")),
    (
        16,
        Some("Two children are building a sandcastle on the beach."),
    ),
    (17, None),
    (18, Some("")),
    (19, Some("")),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_copies_and_paraphrases_cluster_and_the_rest_stay_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, pairs) = (
        dir.path().join("in.parquet"),
        dir.path().join("out.parquet"),
        dir.path().join("pairs.parquet"),
    );
    write_texts(&input, TEXTS);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    dedupe(&[
        "--input",
        &s(&input),
        "--text-column",
        "body",
        "--id-column",
        "doc_id",
        "--output",
        &s(&output),
        "--pairs-output",
        &s(&pairs),
        "--min-cosine",
        "0.5",
    ])
    .await
    .unwrap();
    let batch = read_parquet(&output);
    assert_eq!(batch.num_rows(), TEXTS.len(), "every input row is kept");
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "doc_id",
            "body",
            "cluster_id",
            "is_duplicate",
            "duplicate_of",
            "match_score"
        ]
    );
    let cluster = clusters_of(&batch);
    assert_eq!(cluster[&10], "10");
    assert_eq!(cluster[&11], "10", "exact copy after normalisation");
    assert_eq!(
        cluster[&12], "10",
        "paraphrase verified by the cross-encoder"
    );
    assert_ne!(cluster[&15], cluster[&16]);
    assert_ne!(cluster[&13], cluster[&15]);
    for lonely in [15, 16, 17, 18, 19] {
        assert_eq!(
            cluster[&lonely],
            lonely.to_string(),
            "row {lonely} stays alone (null and empty texts are never grouped)"
        );
    }
    let is_dup = booleans(&batch, "is_duplicate");
    let dup_of = strings(&batch, "duplicate_of");
    let score = floats(&batch, "match_score");
    for row in 0..batch.num_rows() {
        assert_eq!(
            is_dup.value(row),
            dup_of.is_valid(row),
            "duplicate_of is set exactly for duplicates"
        );
        if is_dup.value(row) {
            assert!(score.is_valid(row) && score.value(row) >= 0.75);
        }
    }
    assert_eq!(score.value(1), 1.0, "exact copies match with 1.0");
    let pairs = read_parquet(&pairs);
    for column in ["id_a", "id_b", "bi_score", "cross_score", "verified"] {
        assert!(
            pairs.column_by_name(column).is_some(),
            "pairs output has {column}"
        );
    }

    // The indexes find the same clusters here (IVF probing both its lists).
    for search in [
        &["--search", "hnsw"][..],
        &["--search", "ivf", "--ivf-lists", "2", "--ivf-probes", "2"],
    ] {
        let out = dir.path().join(format!("{}.parquet", search[1]));
        let flags = job_flags(&input, &out);
        dedupe_with(&flags, &[&["--min-cosine", "0.5"][..], search].concat())
            .await
            .unwrap();
        assert_eq!(clusters_of(&read_parquet(&out)), cluster, "{search:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_and_no_duplicates_and_representative_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (one, out) = (
        dir.path().join("one.parquet"),
        dir.path().join("one-out.parquet"),
    );
    write_texts(&one, &[(1, Some("Only one text."))]);
    dedupe(&[
        "--input",
        &s(&one),
        "--text-column",
        "body",
        "--output",
        &s(&out),
    ])
    .await
    .unwrap();
    let batch = read_parquet(&out);
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(
        strings(&batch, "cluster_id").value(0),
        "0",
        "row number is the default id"
    );

    let (distinct, out) = (
        dir.path().join("distinct.parquet"),
        dir.path().join("distinct-out.parquet"),
    );
    write_texts(&distinct, &TEXTS[3..7]);
    dedupe(&[
        "--input",
        &s(&distinct),
        "--text-column",
        "body",
        "--id-column",
        "doc_id",
        "--output",
        &s(&out),
        "--threshold",
        "0.99",
    ])
    .await
    .unwrap();
    let batch = read_parquet(&out);
    assert_eq!(booleans(&batch, "is_duplicate").true_count(), 0);

    let (copies, out) = (
        dir.path().join("copies.parquet"),
        dir.path().join("copies-out.parquet"),
    );
    write_texts(
        &copies,
        &[(1, Some("short text")), (2, Some("SHORT   text"))],
    );
    dedupe(&[
        "--input",
        &s(&copies),
        "--text-column",
        "body",
        "--id-column",
        "doc_id",
        "--output",
        &s(&out),
        "--representative",
        "longest",
    ])
    .await
    .unwrap();
    assert_eq!(
        clusters_of(&read_parquet(&out))[&1],
        "2",
        "the longest text represents the cluster"
    );

    let err = dedupe(&[
        "--input",
        &s(&one),
        "--text-column",
        "nope",
        "--output",
        &s(&out),
    ])
    .await
    .unwrap_err();
    assert!(
        err.contains("\"nope\" not found") && err.contains("body"),
        "{err}"
    );
}
