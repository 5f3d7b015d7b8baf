//! The engine against references on the same pairs
//! (tests/data/parity_reference.json): Python onnxruntime on the same ONNX
//! files (scripts/reference_scores.py) and sentence-transformers on the same
//! weights in PyTorch (scripts/st_reference.py); plus behaviour on real models.

use arrow::array::{Array, StringArray, StringViewArray};
use crossflow::batching::BatchLimits;
use crossflow::{CrossEncoder, EngineOptions, Error, Head, Texts};
use crossflow_tests::{copy_model_config, load, nli_model_dir, repo_root, sts_model_dir};
use serde::Deserialize;

/// Largest absolute logit difference accepted against the reference.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    pairs: Vec<(String, String)>,
    models: std::collections::HashMap<String, ModelReference>,
}

#[derive(Deserialize)]
struct ModelReference {
    dir: String,
    onnx: String,
    logits: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = repo_root().join("tests/data/parity_reference.json");
    let text = std::fs::read_to_string(&path).expect("parity reference");
    serde_json::from_str(&text).expect("valid parity reference")
}

fn max_abs_diff(model: &CrossEncoder, pairs: &[(&str, &str)], expected: &[Vec<f32>]) -> f32 {
    let predictions = model.predict_pairs(pairs).expect("predict");
    let mut worst = 0.0f32;
    for (i, want) in expected.iter().enumerate() {
        for (got, want) in predictions.logits(i).iter().zip(want) {
            worst = worst.max((got - want).abs());
        }
    }
    worst
}

fn reference_pairs(reference: &Reference) -> Vec<(&str, &str)> {
    reference
        .pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

/// Loads the reference's model with `options` (its ONNX file selected).
fn reference_model(expected: &ModelReference, options: EngineOptions) -> CrossEncoder {
    let options = EngineOptions {
        onnx_file: Some(expected.onnx.clone().into()),
        ..options
    };
    CrossEncoder::load(repo_root().join(&expected.dir), &options).expect("load reference model")
}

fn check_model(name: &str) {
    let reference = reference();
    let expected = &reference.models[name];
    let pairs = reference_pairs(&reference);
    assert!(
        pairs.len() >= 200,
        "the reference must hold at least 200 pairs"
    );
    let model = reference_model(expected, EngineOptions::default());
    let worst = max_abs_diff(&model, &pairs, &expected.logits);
    println!(
        "{name}: {} pairs, max |logit - reference| = {worst:e}",
        pairs.len()
    );
    assert!(worst <= TOLERANCE, "max abs diff {worst} over {TOLERANCE}");
    let stats = model.stats();
    assert_eq!(
        stats.truncated_pairs, 3,
        "the three over-long edge cases are truncated and counted"
    );
    assert_eq!(stats.unique_pairs as usize, pairs.len());
}

#[test]
fn sts_int8_logits_match_python_onnxruntime() {
    check_model("sts-int8");
}

#[test]
fn nli_int8_logits_match_python_onnxruntime() {
    check_model("nli-int8");
}

/// The fp32 model from ../shared exercises sorted, padded, multi-pair batches.
#[test]
fn sts_fp32_logits_match_python_onnxruntime_with_batching() {
    check_model("sts-fp32");
}

/// sentence-transformers' `CrossEncoder.predict` (PyTorch) on the same
/// weights (scripts/st_reference.py), against crossflow on the fp32 ONNX file.
#[test]
fn sts_fp32_logits_match_sentence_transformers() {
    check_model("sts-fp32-sentence-transformers");
}

#[test]
fn int8_graphs_batch_with_per_pair_scales_and_give_each_pair_its_own_logits() {
    let reference = reference();
    let expected = &reference.models["sts-int8"];
    let per_pair = reference_model(expected, EngineOptions::default());
    assert_eq!(
        per_pair.limits().max_batch_pairs,
        1,
        "CPU default: one pair per batch"
    );
    let fp32 = reference_model(&reference.models["sts-fp32"], EngineOptions::default());
    assert_eq!(fp32.limits(), BatchLimits::default());
    let scales = EngineOptions {
        per_pair_scales: Some(true),
        ..EngineOptions::default()
    };
    let int8 = reference_model(expected, scales);
    assert_eq!(
        int8.limits(),
        BatchLimits::default(),
        "batched, not one pair per batch"
    );
    // The same pairs in big batches and one at a time: identical logits, and
    // equal to the reference (run one pair at a time in Python).
    let pairs = reference_pairs(&reference);
    let batched = int8.predict_pairs(&pairs).unwrap();
    let alone = per_pair.predict_pairs(&pairs).unwrap();
    assert!(
        int8.stats().batches < per_pair.stats().batches / 4,
        "batched"
    );
    for i in 0..pairs.len() {
        assert_eq!(batched.logits(i), alone.logits(i), "pair {i}");
    }
    assert!(max_abs_diff(&int8, &pairs, &expected.logits) <= TOLERANCE);
    // Batched as the graph is, neighbours change the logits.
    let forced = EngineOptions {
        batch_invariant: Some(false),
        ..EngineOptions::default()
    };
    let raw = reference_model(expected, forced);
    let worst = max_abs_diff(&raw, &pairs, &expected.logits);
    assert!(
        worst > 1e-3,
        "plain batching of a dynamically quantized graph: {worst}"
    );
}

#[test]
fn fp32_results_do_not_depend_on_batch_limits_or_sessions() {
    let reference = reference();
    let expected = &reference.models["sts-fp32"];
    let pairs = &reference_pairs(&reference)[..64];
    for (tokens, pairs_cap, sessions) in [(1, 1, 3), (200, 4, 1), (100_000, 1000, 2)] {
        let limits = BatchLimits {
            max_batch_tokens: tokens,
            max_batch_pairs: pairs_cap,
        };
        let options = EngineOptions {
            limits,
            sessions: Some(sessions),
            ..EngineOptions::default()
        };
        let model = reference_model(expected, options);
        assert_eq!(model.sessions(), sessions);
        let worst = max_abs_diff(&model, pairs, &expected.logits[..64]);
        assert!(
            worst <= TOLERANCE,
            "limits ({tokens}, {pairs_cap}), {sessions} sessions: diff {worst}"
        );
    }
}

#[test]
fn nulls_give_nulls_and_repeats_are_scored_once() {
    let model = load(&sts_model_dir());
    let a = StringViewArray::from(vec![
        Some("A man plays guitar."),
        None,
        Some("A man plays guitar."),
        Some(""),
    ]);
    let b = StringArray::from(vec![
        Some("Someone plays music."),
        Some("x"),
        Some("Someone plays music."),
        None,
    ]);
    let scores = model
        .score(
            &Texts::from_array(&a).unwrap(),
            &Texts::from_array(&b).unwrap(),
        )
        .unwrap();
    assert_eq!(scores.len(), 4);
    assert!(scores.is_valid(0) && scores.is_null(1) && scores.is_null(3));
    assert_eq!(scores.value(0), scores.value(2));
    assert!(
        (0.0..=1.0).contains(&scores.value(0)),
        "sigmoid scores lie in 0..1"
    );
    let stats = model.stats();
    assert_eq!(
        (stats.pairs, stats.null_pairs, stats.unique_pairs),
        (4, 2, 1)
    );
}

#[test]
fn cached_pairs_are_not_run_again_and_keep_their_logits() {
    let reference = reference();
    let expected = &reference.models["sts-int8"];
    let pairs = reference_pairs(&reference);
    let options = EngineOptions {
        cache_pairs: 1_000,
        ..EngineOptions::default()
    };
    let model = reference_model(expected, options);
    let first = model.predict_pairs(&pairs[..100]).unwrap();
    let second = model.predict_pairs(&pairs[50..150]).unwrap();
    for i in 0..50 {
        assert_eq!(first.logits(50 + i), second.logits(i), "cached row {i}");
    }
    let stats = model.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (50, 150));
    assert_eq!(stats.unique_pairs, 150, "hits are not run");
    assert_eq!(stats.cache_hit_rate(), Some(0.25));
    let worst = max_abs_diff(&model, &pairs, &expected.logits);
    assert!(worst <= TOLERANCE, "with a cache: max abs diff {worst}");
}

#[test]
fn a_constant_side_scores_against_every_row() {
    let model = load(&sts_model_dir());
    let docs = StringArray::from(vec![
        "A dog runs in a park.",
        "The stock market fell.",
        "A puppy is running outside.",
    ]);
    let query = Texts::Scalar(Some("A dog is running."));
    let scores = model
        .score(&query, &Texts::from_array(&docs).unwrap())
        .unwrap();
    let pairwise = model
        .predict_pairs(&[
            ("A dog is running.", "A dog runs in a park."),
            ("A dog is running.", "The stock market fell."),
        ])
        .unwrap();
    assert_eq!(scores.len(), 3);
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    assert!((scores.value(0) - sigmoid(pairwise.logits(0)[0])).abs() < 1e-6);
    assert!(scores.value(0) > scores.value(1) && scores.value(2) > scores.value(1));
}

#[test]
fn nli_labels_come_from_the_config_in_model_order() {
    let model = load(&nli_model_dir());
    let Head::Classification { labels } = model.head() else {
        panic!("NLI model is a classifier")
    };
    assert_eq!(labels, &["contradiction", "entailment", "neutral"]);
    let a = StringArray::from(vec![
        "A man is sleeping.",
        "A man is sleeping.",
        "A woman sings.",
    ]);
    let b = StringArray::from(vec![
        "A man is awake and running.",
        "A person is asleep.",
        "A woman is on a stage.",
    ]);
    let out = model
        .classify(
            &Texts::from_array(&a).unwrap(),
            &Texts::from_array(&b).unwrap(),
        )
        .unwrap();
    assert_eq!(out.labels.value(0), "contradiction");
    assert_eq!(out.labels.value(1), "entailment");
    assert_eq!(out.probs.num_columns(), 3);
    let wrong =
        load(&sts_model_dir()).classify(&Texts::Scalar(Some("a")), &Texts::Scalar(Some("b")));
    assert!(matches!(wrong, Err(Error::WrongHead { .. })));
}

#[test]
fn broken_model_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_model_config(&sts_model_dir(), dir.path());
    std::fs::write(dir.path().join("model.onnx"), b"not an onnx graph").unwrap();
    let err = CrossEncoder::load(dir.path(), &EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.onnx"), "{err}");

    std::fs::write(dir.path().join("tokenizer.json"), b"{ broken").unwrap();
    let err = CrossEncoder::load(dir.path(), &EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn max_length_beyond_the_position_table_is_refused() {
    let options = EngineOptions {
        max_length: Some(4096),
        ..EngineOptions::default()
    };
    let err = CrossEncoder::load(sts_model_dir(), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");
}

#[test]
fn cuda_without_a_cuda_runtime_is_a_clear_error_not_a_cpu_fallback() {
    let options = EngineOptions {
        device: crossflow::Device::Cuda(0),
        ..EngineOptions::default()
    };
    let err = CrossEncoder::load(sts_model_dir(), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUDA"), "{err}");
}
