//! The engine against references on the same pairs: Python onnxruntime on the
//! same ONNX files (scripts/reference_scores.py) and sentence-transformers on
//! the same weights in PyTorch (scripts/st_reference.py); plus behaviour on
//! real models.
//!
//! fp32 references agree across machines and are stored
//! (tests/data/parity_reference.json). onnxruntime's int8 kernels give
//! different logits on different instruction sets (AVX2, AVX-512 VNNI, ...),
//! so the int8 references are computed here, by Python onnxruntime on the
//! machine that runs the test; without that Python environment the int8 tests
//! fail, they never skip.

use arrow::array::{Array, StringArray, StringViewArray};
use crossflow::BatchLimits;
use crossflow::{CrossEncoder, EngineOptions, Error, Head, Texts};
use crossflow_tests::parity_reference::*;
use crossflow_tests::{copy_model_config, load, nli_model_dir, sts_model_dir};

/// Largest absolute logit difference accepted against the reference.
const TOLERANCE: f32 = 1e-4;

/// The largest absolute difference between `model`'s logits and `expected`,
/// over every logit of every pair (a missing or extra value is an error).
fn max_abs_diff(model: &CrossEncoder, pairs: &[(&str, &str)], expected: &[Vec<f32>]) -> f32 {
    let predictions = model.predict_pairs(pairs).expect("predict");
    assert_eq!(expected.len(), pairs.len(), "one reference row per pair");
    let mut worst = 0.0f32;
    for (i, want) in expected.iter().enumerate() {
        let got = predictions.logits(i);
        assert_eq!(got.len(), want.len(), "pair {i}: logits per pair");
        for (got, want) in got.iter().zip(want) {
            worst = worst.max((got - want).abs());
        }
    }
    worst
}

/// Loads the bundled int8 STS model with `options`.
fn sts_int8(options: EngineOptions) -> CrossEncoder {
    CrossEncoder::load(sts_model_dir(), &options).expect("load the bundled STS model")
}

fn check_model(reference: &Reference, name: &str) {
    let expected = &reference.models[name];
    let pairs = reference_pairs(reference);
    assert!(
        pairs.len() >= 200,
        "the reference must hold at least 200 pairs"
    );
    let model = reference_model(expected, EngineOptions::default());
    let worst = max_abs_diff(&model, &pairs, &expected.logits);
    println!(
        "{name}: {} pairs, max |logit - reference| = {worst:e} (reference: onnxruntime {}, cpu {:?})",
        pairs.len(),
        reference.onnxruntime,
        reference.cpu
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
    check_model(&computed_here("sts-int8"), "sts-int8");
}

#[test]
fn nli_int8_logits_match_python_onnxruntime() {
    check_model(&computed_here("nli-int8"), "nli-int8");
}

/// The int8 references are not stored: they depend on the CPU.
#[test]
fn only_machine_independent_references_are_stored() {
    let mut stored: Vec<String> = stored().models.into_keys().collect();
    stored.sort();
    assert_eq!(stored, ["sts-fp32", "sts-fp32-sentence-transformers"]);
}

/// The fp32 model from ../shared exercises sorted, padded, multi-pair batches.
#[test]
fn sts_fp32_logits_match_python_onnxruntime_with_batching() {
    check_model(&stored(), "sts-fp32");
}

/// sentence-transformers' `CrossEncoder.predict` (PyTorch) on the same
/// weights (scripts/st_reference.py), against crossflow on the fp32 ONNX file.
#[test]
fn sts_fp32_logits_match_sentence_transformers() {
    check_model(&stored(), "sts-fp32-sentence-transformers");
}

/// Batch invariance, crossflow against itself on this machine: the same pairs
/// batched with per-pair scales and run one pair at a time give identical logits.
#[test]
fn int8_graphs_batch_with_per_pair_scales_and_give_each_pair_its_own_logits() {
    let reference = stored();
    let per_pair = sts_int8(EngineOptions::default());
    assert_eq!(
        per_pair.limits().expect("started").max_batch_pairs,
        1,
        "CPU default: one pair per batch"
    );
    let fp32 = reference_model(&reference.models["sts-fp32"], EngineOptions::default());
    assert_eq!(fp32.limits(), Some(BatchLimits::default()));
    let int8 = sts_int8(EngineOptions {
        per_pair_scales: Some(true),
        ..EngineOptions::default()
    });
    assert_eq!(
        int8.limits(),
        Some(BatchLimits::default()),
        "batched, not one pair per batch"
    );
    let pairs = reference_pairs(&reference);
    let alone = per_pair.predict_pairs(&pairs).unwrap();
    let alone: Vec<Vec<f32>> = (0..pairs.len()).map(|i| alone.logits(i).to_vec()).collect();
    assert_eq!(max_abs_diff(&int8, &pairs, &alone), 0.0, "identical logits");
    assert!(
        int8.stats().batches < per_pair.stats().batches / 4,
        "batched"
    );
    // Batched as the graph is, neighbours change the logits.
    let raw = sts_int8(EngineOptions {
        batch_invariant: Some(false),
        ..EngineOptions::default()
    });
    let worst = max_abs_diff(&raw, &pairs, &alone);
    assert!(
        worst > 1e-3,
        "plain batching of a dynamically quantized graph: {worst}"
    );
    assert!(per_pair.is_batch_invariant() && int8.is_batch_invariant());
    assert!(!raw.is_batch_invariant(), "and it says so");
    let fp32_off = reference_model(
        &reference.models["sts-fp32"],
        EngineOptions {
            batch_invariant: Some(false),
            ..EngineOptions::default()
        },
    );
    assert!(
        fp32.is_batch_invariant() && fp32_off.is_batch_invariant(),
        "fp32 batches invariantly whatever the option"
    );
}

#[test]
fn fp32_results_do_not_depend_on_batch_limits_or_sessions() {
    let reference = stored();
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

/// Callers on several threads share one model's queue (and its batches) and
/// each gets exactly the logits of its own pairs, in its order.
#[test]
fn concurrent_callers_share_the_queue_and_get_their_own_logits() {
    let reference = stored();
    let pairs = reference_pairs(&reference);
    let model = sts_int8(EngineOptions {
        batch_invariant: Some(true),
        per_pair_scales: Some(true),
        cache_pairs: 0,
        ..EngineOptions::default()
    });
    let alone: Vec<Vec<f32>> = pairs
        .iter()
        .map(|&pair| model.predict_pairs(&[pair]).unwrap().logits(0).to_vec())
        .collect();
    let before = model.stats();
    std::thread::scope(|scope| {
        for caller in 0..6 {
            let (model, pairs, alone) = (&model, &pairs, &alone);
            scope.spawn(move || {
                let mine: Vec<usize> = (caller..pairs.len()).step_by(6).collect();
                for chunk in mine.chunks(7) {
                    let asked: Vec<(&str, &str)> = chunk.iter().map(|&i| pairs[i]).collect();
                    let got = model.predict_pairs(&asked).unwrap();
                    for (row, &i) in chunk.iter().enumerate() {
                        assert_eq!(got.logits(row), alone[i], "caller {caller}, pair {i}");
                    }
                }
            });
        }
    });
    let during = model.stats().since(&before);
    assert_eq!(during.unique_pairs as usize, pairs.len());
    assert_eq!(during.queue_depth, 0, "nothing left in the queue");
    println!("{during:?}");
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

/// Cached logits are the model's own: equal to an uncached run on this machine.
#[test]
fn cached_pairs_are_not_run_again_and_keep_their_logits() {
    let reference = stored();
    let pairs = reference_pairs(&reference);
    let model = sts_int8(EngineOptions {
        cache_pairs: 1_000,
        ..EngineOptions::default()
    });
    let first = model.predict_pairs(&pairs[..100]).unwrap();
    let second = model.predict_pairs(&pairs[50..150]).unwrap();
    for i in 0..50 {
        assert_eq!(first.logits(50 + i), second.logits(i), "cached row {i}");
    }
    let stats = model.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (50, 150));
    assert_eq!(stats.unique_pairs, 150, "hits are not run");
    assert_eq!(stats.cache_hit_rate(), Some(0.25));
    let uncached = sts_int8(EngineOptions::default())
        .predict_pairs(&pairs)
        .unwrap();
    let uncached: Vec<Vec<f32>> = (0..pairs.len())
        .map(|i| uncached.logits(i).to_vec())
        .collect();
    let worst = max_abs_diff(&model, &pairs, &uncached);
    assert_eq!(worst, 0.0, "with a cache: max abs diff {worst}");
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

    let graph = crossflow::ModelFiles::resolve(sts_model_dir(), None)
        .unwrap()
        .onnx;
    std::fs::copy(graph, dir.path().join("model.onnx")).unwrap();
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
