//! `embed(text)` and `cosine(u, v)` in SQL: the bi-encoder's unit vectors,
//! exactly those the dedupe job searches, and their cosine.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use crossflow::{BiEncoder, EngineOptions};
use crossflow_pipelines::models::ModelArgs;
use crossflow_pipelines::sql::{execute, session};
use crossflow_tests::{PAIRS, bi_encoder_dir, query, write_pairs_parquet};

fn vectors<'a>(batch: &'a RecordBatch, name: &str) -> &'a FixedSizeListArray {
    batch.column_by_name(name).unwrap().as_fixed_size_list()
}

fn row(list: &FixedSizeListArray, i: usize) -> Vec<f32> {
    list.value(i)
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn embed_gives_the_dedupe_jobs_vectors_and_cosine_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    write_pairs_parquet(&path);
    let models = ModelArgs::default().load_model_set(None).unwrap();
    let ctx = session(&models, &[format!("t={}", path.display())])
        .await
        .unwrap();
    let batch = query(
        &ctx,
        "SELECT id, a, embed(a) AS v, cosine(embed(a), embed(a)) AS itself, \
         cosine(embed(a), embed(b)) AS ab, \
         cosine(embed(a), embed('A man plays an instrument.')) AS to_constant \
         FROM t ORDER BY id",
    )
    .await;
    let bi = models.bi.as_ref().unwrap();
    assert_eq!(
        batch.schema().field_with_name("v").unwrap().data_type(),
        &DataType::FixedSizeList(
            Arc::new(arrow::datatypes::Field::new_list_field(
                DataType::Float32,
                true
            )),
            bi.dimension() as i32
        )
    );
    // The dedupe job embeds with BiEncoder::embed_texts (pipelines/src/dedupe/job.rs).
    let job = BiEncoder::load(bi_encoder_dir(), &EngineOptions::default()).unwrap();
    let (v, itself) = (
        vectors(&batch, "v"),
        batch.column_by_name("itself").unwrap(),
    );
    let ab = batch
        .column_by_name("ab")
        .unwrap()
        .as_primitive::<Float32Type>();
    let ids = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    for i in 0..batch.num_rows() {
        let (_, a, b) = PAIRS.iter().find(|p| p.0 == ids.value(i)).unwrap();
        let Some(a) = a else {
            assert!(
                v.is_null(i) && itself.is_null(i),
                "a NULL text has no vector"
            );
            continue;
        };
        assert_eq!(
            row(v, i),
            job.embed_texts(&[a]).unwrap(),
            "row {i}: the job's vector"
        );
        let cosine = itself.as_primitive::<Float32Type>().value(i);
        assert!(
            (cosine - 1.0).abs() < 1e-6,
            "cosine of a text with itself: {cosine}"
        );
        if let Some(b) = b {
            let expected: f32 = row(v, i)
                .iter()
                .zip(job.embed_texts(&[b]).unwrap())
                .map(|(x, y)| x * y)
                .sum();
            assert!(
                (ab.value(i) - expected).abs() < 1e-6,
                "row {i}: {} vs {expected}",
                ab.value(i)
            );
        }
    }
    let to_constant = batch.column_by_name("to_constant").unwrap();
    assert_eq!(to_constant.null_count(), v.null_count());

    let err = execute(&ctx, &["SELECT cosine(a, b) FROM t".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cosine: arguments must be vectors"),
        "{err}"
    );
    let err = execute(&ctx, &["SELECT embed(id) FROM t".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("embed: argument 1 must be a string"),
        "{err}"
    );
}

/// A bi-encoder that lists no `Normalize` module still gives unit vectors:
/// the dedupe job's candidate search and `cosine` take dot products.
#[test]
fn vectors_are_unit_vectors_whatever_modules_the_model_lists() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bi_encoder_dir(), dir.path());
    std::fs::remove_file(dir.path().join("modules.json")).unwrap();
    let model = BiEncoder::load(dir.path(), &EngineOptions::default()).unwrap();
    let texts = ["A man is playing a guitar.", "Dogs are running outside."];
    let vectors = model.embed_texts(&texts).unwrap();
    for vector in vectors.chunks(model.dimension()) {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let bundled = BiEncoder::load(bi_encoder_dir(), &EngineOptions::default()).unwrap();
    assert_eq!(vectors, bundled.embed_texts(&texts).unwrap());
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
