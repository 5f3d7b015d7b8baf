//! `crossflow dedupe` clusters a user can trust: every duplicate matches the
//! row it names directly, thresholds keep their meaning, ids keep their nulls.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use crossflow_tests::dedupe_io::*;
use crossflow_tests::read_parquet;

/// A chain of paraphrases whose ends are unrelated. Bundled STS model, earlier
/// row first, on an AVX2 CPU: 1~2 0.92, 1~4 0.80, 2~4 0.93, 3~4 0.70, while
/// 1~3 0.07 and 2~3 0.19; every margin to the 0.55 threshold is over 0.1, far
/// above the spread between CPUs (docs/correctness.md, "Scores across CPUs").
const CHAIN: &[(i64, Option<&str>)] = &[
    (1, Some("A cat is lying on a couch.")),
    (2, Some("The cat sleeps on the sofa.")),
    (3, Some("A puppy is sleeping on a rug.")),
    (4, Some("A kitten is napping on a sofa.")),
    (5, Some("The stock market fell sharply on Monday.")),
];

/// Scores of `pairs` (earlier text first) by the bundled STS model.
fn sts_scores(pairs: &[(&str, &str)]) -> Vec<f32> {
    let model = crossflow_tests::load(&crossflow_tests::sts_model_dir());
    let predictions = model.predict_pairs(pairs).unwrap();
    model.scores_of(&predictions).values().to_vec()
}

/// Scores of `pairs` in both orders, combined by `combine`.
fn both_ways(pairs: &[(&str, &str)], combine: fn(f32, f32) -> f32) -> Vec<f32> {
    let reversed: Vec<(&str, &str)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
    let (forward, backward) = (sts_scores(pairs), sts_scores(&reversed));
    forward
        .into_iter()
        .zip(backward)
        .map(|(f, b)| combine(f, b))
        .collect()
}

/// [`assert_duplicates_match_directly_by`] with the forward score.
fn assert_duplicates_match_directly(batch: &RecordBatch, threshold: f32) -> usize {
    assert_duplicates_match_directly_by(batch, threshold, sts_scores)
}

/// Every duplicate matches the row its `duplicate_of` names directly: an exact
/// copy (score 1.0) or a cross-encoder score (by `score`) at or above
/// `threshold`, equal to its `match_score`. Returns the number of duplicates
/// checked.
fn assert_duplicates_match_directly_by(
    batch: &RecordBatch,
    threshold: f32,
    score: impl Fn(&[(&str, &str)]) -> Vec<f32>,
) -> usize {
    use crossflow_pipelines::dedupe::normalize::normalize;
    let ids = ints(batch, "doc_id");
    let texts = strings(batch, "body");
    let text_of: HashMap<String, &str> = (0..batch.num_rows())
        .map(|r| (ids.value(r).to_string(), texts.value(r)))
        .collect();
    let dup_of = strings(batch, "duplicate_of");
    let scores = floats(batch, "match_score");
    let duplicates: Vec<usize> = (0..batch.num_rows())
        .filter(|&r| dup_of.is_valid(r))
        .collect();
    // The job scores a pair with the earlier row's text first (ids follow rows here).
    let pairs: Vec<(&str, &str)> = duplicates
        .iter()
        .map(|&r| {
            let (text, other) = (texts.value(r), text_of[dup_of.value(r)]);
            if ids.value(r) < dup_of.value(r).parse::<i64>().unwrap() {
                (text, other)
            } else {
                (other, text)
            }
        })
        .collect();
    let direct = score(&pairs);
    for ((&row, (text, other)), score) in duplicates.iter().zip(&pairs).zip(direct) {
        if normalize(text) == normalize(other) {
            assert_eq!(scores.value(row), 1.0, "exact copy {text:?}");
        } else {
            assert!(
                score >= threshold,
                "{text:?} is marked a duplicate of {other:?} but scores {score} against it"
            );
            assert!(
                (scores.value(row) - score).abs() < 1e-6,
                "match_score {} is the direct score {score}",
                scores.value(row)
            );
        }
    }
    duplicates.len()
}

/// Writes CHAIN into `dir` and returns the flags of a run over it into
/// `output` (every pair a candidate, threshold 0.55, the forward score), with
/// `--pairs-output` when given.
fn chain_args(dir: &Path, output: &Path, pairs: Option<&Path>) -> Vec<String> {
    let input = dir.join("chain.parquet");
    write_texts(&input, CHAIN);
    let mut args = job_flags(&input, output);
    args.extend(
        [
            "--min-cosine=-1",
            "--threshold",
            "0.55",
            "--direction",
            "forward",
        ]
        .map(String::from),
    );
    if let Some(pairs) = pairs {
        args.extend(["--pairs-output".into(), pairs.to_str().unwrap().to_owned()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_paraphrases_does_not_merge_its_unrelated_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (output, pairs) = (
        dir.path().join("out.parquet"),
        dir.path().join("pairs.parquet"),
    );
    let args = chain_args(dir.path(), &output, Some(&pairs));
    dedupe_with(&args, &[]).await.unwrap();
    let batch = read_parquet(&output);
    let cluster = clusters_of(&batch);
    assert_eq!(
        (cluster[&2].as_str(), cluster[&4].as_str()),
        ("1", "1"),
        "both match row 1 directly"
    );
    assert_eq!(
        cluster[&3], "3",
        "row 3 matches row 4 only, not the centre 1"
    );
    assert_eq!(cluster[&5], "5");
    assert_eq!(assert_duplicates_match_directly(&batch, 0.55), 2);

    // The pairs output: every candidate pair, its score as the engine gives it,
    // verified exactly when the score reaches the threshold; the link 3~4
    // that chained the clusters before is there.
    let pairs = read_parquet(&pairs);
    let (id_a, id_b) = (strings(&pairs, "id_a"), strings(&pairs, "id_b"));
    let (cross, verified) = (floats(&pairs, "cross_score"), booleans(&pairs, "verified"));
    assert_eq!(
        pairs.num_rows(),
        10,
        "all pairs of five texts are candidates"
    );
    let text = |id: &str| CHAIN[id.parse::<usize>().unwrap() - 1].1.unwrap();
    let texts: Vec<(&str, &str)> = (0..pairs.num_rows())
        .map(|r| (text(id_a.value(r)), text(id_b.value(r))))
        .collect();
    let mut linked = false;
    for (row, score) in sts_scores(&texts).into_iter().enumerate() {
        assert!((cross.value(row) - score).abs() < 1e-6, "pair {row}");
        assert_eq!(verified.value(row), score >= 0.55, "pair {row}");
        let ends = [id_a.value(row), id_b.value(row)];
        linked |= verified.value(row) && ends.contains(&"3") && ends.contains(&"4");
    }
    assert!(linked, "3~4 is verified, yet 4 is not in 3's cluster");

    // --max-cluster-size 2: 1 keeps its best match (2), 3 then takes 4.
    dedupe_with(&args, &["--max-cluster-size", "2"])
        .await
        .unwrap();
    let capped = read_parquet(&output);
    let cluster = clusters_of(&capped);
    assert_eq!(
        [&cluster[&1], &cluster[&2], &cluster[&3], &cluster[&4]],
        ["1", "1", "3", "3"]
    );
    assert_duplicates_match_directly(&capped, 0.55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_keep_their_meaning_and_classifiers_need_a_duplicate_label() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, raw) = (
        dir.path().join("plain.parquet"),
        dir.path().join("raw.parquet"),
    );
    dedupe_with(&chain_args(dir.path(), &plain, None), &[])
        .await
        .unwrap();
    // --activation none would give raw logits; the threshold stays a probability.
    dedupe_with(
        &chain_args(dir.path(), &raw, None),
        &["--activation", "none"],
    )
    .await
    .unwrap();
    let (plain, raw) = (read_parquet(&plain), read_parquet(&raw));
    assert_eq!(clusters_of(&plain), clusters_of(&raw));
    assert_eq!(
        plain.column_by_name("match_score"),
        raw.column_by_name("match_score")
    );

    let nli = crossflow_tests::nli_model_dir();
    let out = dir.path().join("nli.parquet");
    let nli_args = chain_args(dir.path(), &out, None);
    let with_nli = ["--model", nli.to_str().unwrap()];
    let err = dedupe_with(&nli_args, &with_nli).await.unwrap_err();
    assert!(
        err.contains("classifier") && err.contains("--duplicate-label"),
        "{err}"
    );
    let err = dedupe_with(
        &nli_args,
        &[&with_nli[..], &["--duplicate-label", "same"]].concat(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("entailment"), "the labels are listed: {err}");
    dedupe_with(
        &nli_args,
        &[&with_nli[..], &["--duplicate-label", "entailment"]].concat(),
    )
    .await
    .unwrap();
    let batch = read_parquet(&out);
    assert_eq!(batch.num_rows(), CHAIN.len());
    // Entailment both ways: each duplicate's match_score is the lower probability.
    let model = crossflow_tests::load(&nli);
    let texts = strings(&batch, "body");
    let dup_of = strings(&batch, "duplicate_of");
    let scores = floats(&batch, "match_score");
    for row in (0..batch.num_rows()).filter(|&r| dup_of.is_valid(r)) {
        let other = CHAIN[dup_of.value(row).parse::<usize>().unwrap() - 1]
            .1
            .unwrap();
        let both = model
            .predict_pairs(&[(texts.value(row), other), (other, texts.value(row))])
            .unwrap();
        let entailment = |i| crossflow::head::probabilities(both.logits(i))[1];
        let want = entailment(0).min(entailment(1));
        assert!(want >= 0.55 && (scores.value(row) - want).abs() < 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_decide_and_match_score_is_the_combined_score() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.parquet");
    let mut args = chain_args(dir.path(), &output, None);
    args.truncate(args.len() - 2);
    let mean: fn(f32, f32) -> f32 = |f, b| (f + b) / 2.0;
    for (direction, combine) in [("mean", mean), ("max", f32::max)] {
        dedupe_with(&args, &["--direction", direction])
            .await
            .unwrap();
        let batch = read_parquet(&output);
        let checked =
            assert_duplicates_match_directly_by(&batch, 0.55, |pairs| both_ways(pairs, combine));
        assert!(
            checked >= 1,
            "--direction {direction}: a duplicate to check"
        );
    }
    // The default is the mean of both orders.
    dedupe_with(&args, &[]).await.unwrap();
    assert_duplicates_match_directly_by(&read_parquet(&output), 0.55, |pairs| {
        both_ways(pairs, mean)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_ids_stay_null_and_rows_keep_their_own_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (
        dir.path().join("in.parquet"),
        dir.path().join("out.parquet"),
    );
    let ids: ArrayRef = Arc::new(StringArray::from(vec![None, Some("b"), Some("c")]));
    let texts: ArrayRef = Arc::new(StringArray::from(vec![
        "A man is playing a guitar.",
        "a man is  playing a GUITAR.",
        "The stock market fell sharply on Monday.",
    ]));
    let extra: ArrayRef = Arc::new(Int64Array::from(vec![10, 20, 30]));
    crossflow_tests::write_parquet(
        &input,
        vec![("doc_id", ids), ("body", texts), ("extra", extra)],
    );
    dedupe_with(&job_flags(&input, &output), &[]).await.unwrap();
    let batch = read_parquet(&output);
    assert!(
        strings(&batch, "doc_id").is_null(0),
        "a null id is kept null"
    );
    let (cluster, dup_of) = (
        strings(&batch, "cluster_id"),
        strings(&batch, "duplicate_of"),
    );
    assert!(
        cluster.is_null(0) && cluster.is_null(1),
        "named by a null id"
    );
    assert!(booleans(&batch, "is_duplicate").value(1));
    assert!(dup_of.is_null(1), "duplicate of the row with a null id");
    assert_eq!(cluster.value(2), "c");
    assert_eq!(ints(&batch, "extra").values(), &[10, 20, 30]);
}
