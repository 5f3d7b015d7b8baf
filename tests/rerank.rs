//! `crossflow rerank`: top-k per query by cross-encoder score, and fusion.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type, UInt64Type};
use clap::Parser;
use crossflow_pipelines::cli::{Cli, run};
use crossflow_tests::{read_parquet, write_parquet};

const ROWS: &[(i64, &str, i64, &str, f64)] = &[
    (
        1,
        "A man is playing a guitar.",
        10,
        "The stock market fell sharply today.",
        0.9,
    ),
    (
        1,
        "A man is playing a guitar.",
        11,
        "A man plays the guitar on stage.",
        0.2,
    ),
    (
        1,
        "A man is playing a guitar.",
        12,
        "Someone is playing an instrument.",
        0.5,
    ),
    (
        1,
        "A man is playing a guitar.",
        13,
        "A cat sleeps on the sofa.",
        0.1,
    ),
    (
        2,
        "Two dogs run in a field.",
        20,
        "Dogs are running across a meadow.",
        0.3,
    ),
    (
        2,
        "Two dogs run in a field.",
        21,
        "A chef cooks pasta.",
        0.8,
    ),
    (
        2,
        "Two dogs run in a field.",
        22,
        "The weather is cold.",
        0.4,
    ),
];

fn write(path: &Path) {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "query_id",
            Arc::new(Int64Array::from_iter_values(ROWS.iter().map(|r| r.0))),
        ),
        (
            "query",
            Arc::new(StringArray::from_iter_values(ROWS.iter().map(|r| r.1))),
        ),
        (
            "doc_id",
            Arc::new(Int64Array::from_iter_values(ROWS.iter().map(|r| r.2))),
        ),
        (
            "doc",
            Arc::new(StringArray::from_iter_values(ROWS.iter().map(|r| r.3))),
        ),
        (
            "bm25",
            Arc::new(Float64Array::from_iter_values(ROWS.iter().map(|r| r.4))),
        ),
    ];
    write_parquet(path, columns);
}

async fn rerank(args: &[&str]) {
    let cli = Cli::try_parse_from(
        ["crossflow", "rerank"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .unwrap();
    run(cli, &mut Vec::new()).await.unwrap();
}

#[tokio::test]
async fn keeps_the_top_k_per_query_in_cross_encoder_order() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (
        dir.path().join("candidates.parquet"),
        dir.path().join("top.parquet"),
    );
    write(&input);
    rerank(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--top-k",
        "2",
    ])
    .await;
    let batch = read_parquet(&output);
    assert_eq!(batch.num_rows(), 4, "two per query");
    let query = batch
        .column_by_name("query_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let doc = batch
        .column_by_name("doc_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let rank = batch
        .column_by_name("rank")
        .unwrap()
        .as_primitive::<UInt64Type>();
    let score = batch
        .column_by_name("cross_score")
        .unwrap()
        .as_primitive::<Float32Type>();
    assert_eq!(query.values(), &[1, 1, 2, 2]);
    assert_eq!(rank.values(), &[1, 2, 1, 2]);
    assert!(score.value(0) >= score.value(1) && score.value(2) >= score.value(3));
    assert_eq!(
        doc.value(0),
        11,
        "the guitar paraphrase comes first, whatever bm25 said"
    );
    assert_eq!(doc.value(2), 20);
    assert!(
        batch.column_by_name("bm25").is_some(),
        "input columns are kept"
    );
}

#[tokio::test]
async fn fusion_mixes_in_the_first_stage_score() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (
        dir.path().join("candidates.parquet"),
        dir.path().join("fused.parquet"),
    );
    write(&input);
    let args = [
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--top-k",
        "1",
    ];
    rerank(
        &[
            &args[..],
            &["--first-stage-column", "bm25", "--fusion", "0.0"],
        ]
        .concat(),
    )
    .await;
    let batch = read_parquet(&output);
    let doc = batch
        .column_by_name("doc_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        doc.values(),
        &[10, 21],
        "weight 0 ranks by the first stage alone"
    );
    let score = batch
        .column_by_name("score")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(score.values(), &[1.0, 1.0], "normalised per query");
}
