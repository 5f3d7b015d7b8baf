//! Loading the bundled int8 graph with each rewrite, and every fallback.

use super::super::proto;
use super::*;
use crate::session::PaddedBatch;

fn bundled_int8() -> std::path::PathBuf {
    super::super::bundled_int8("crossflow-sts-minilm-l6")
}

fn load_int8(probes: impl Fn() -> Result<Vec<EncodedPair>>, rewrite: Rewrite) -> Prepared {
    let rewrites = Rewrites {
        per_pair: rewrite,
        unmask: unpadded::rewrite,
    };
    load_bundled(Invariance::PerPairScales, probes, rewrites)
}

fn load_one_pair(probes: impl Fn() -> Result<Vec<EncodedPair>>, unmask: Unmask) -> Prepared {
    let rewrites = Rewrites {
        per_pair: per_pair::rewrite,
        unmask,
    };
    load_bundled(Invariance::OnePairPerBatch, probes, rewrites)
}

fn load_bundled(
    invariance: Invariance,
    probes: impl Fn() -> Result<Vec<EncodedPair>>,
    rewrites: Rewrites,
) -> Prepared {
    let settings = SessionSettings {
        sessions: 1,
        intra_threads: Some(1),
        ..SessionSettings::default()
    };
    let onnx = bundled_int8();
    let bytes = std::fs::read(&onnx).unwrap();
    let graph = Graph {
        onnx: &onnx,
        bytes: &bytes,
        settings: &settings,
        wanted: &["logits"],
    };
    graph
        .load(invariance, probes, 0, rewrites)
        .expect("falls back, never fails")
}

fn probes() -> Result<Vec<EncodedPair>> {
    Ok((3..9)
        .map(|n| EncodedPair {
            ids: (0..n).map(|i| 101 + i as u32 * 7).collect(),
            type_ids: vec![0; n],
            truncated: false,
        })
        .collect())
}

#[test]
fn a_rewrite_that_passes_its_probes_batches() {
    let prepared = load_int8(probes, per_pair::rewrite);
    assert!(!prepared.one_pair_per_batch);
}

#[test]
fn one_pair_runs_use_the_unmasked_graph_and_refuse_padding() {
    let prepared = load_one_pair(probes, unpadded::rewrite);
    assert!(prepared.one_pair_per_batch && prepared.model.is_single_unpadded());
    let pairs = probes().unwrap();
    let session = &mut prepared.model.into_sessions()[0];
    for pair in &pairs[..2] {
        session
            .run(&PaddedBatch::new(&[pair], pair.len(), 0))
            .expect("one pair without padding");
    }
    let cols = pairs[1].len();
    for (batch, case) in [
        (PaddedBatch::new(&[&pairs[0]], cols, 0), "one padded pair"),
        (
            PaddedBatch::new(&[&pairs[1], &pairs[1]], cols, 0),
            "two pairs",
        ),
    ] {
        let error = session.run(&batch).expect_err(case).to_string();
        assert!(error.contains("without padding"), "{case}: {error}");
    }
    let per_pair_failed = load_int8(probes, |_| Ok(None));
    assert!(per_pair_failed.one_pair_per_batch && per_pair_failed.model.is_single_unpadded());
}

#[test]
fn a_failed_unmasking_runs_the_original_graph_one_pair_per_batch() {
    let failing_probes = || Err(Error::tokenizer("", "probe tokenization failed".into()));
    let not_handled: Unmask = |_| Ok(None);
    let malformed: Unmask = |bytes| proto::parse(&bytes[..bytes.len() / 2]).map(|_| None);
    let refused: Unmask = |_| {
        Ok(Some(unpadded::Rewritten {
            bytes: b"not an onnx graph".to_vec(),
            softmaxes: 1,
        }))
    };
    let changed: Unmask = |_| {
        // Another model's graph: other logits for the same pair.
        let nli = super::super::bundled_int8("crossflow-nli-minilm-l6");
        Ok(Some(unpadded::Rewritten {
            bytes: std::fs::read(nli).unwrap(),
            softmaxes: 6,
        }))
    };
    let no_probes = || Ok(Vec::new());
    let cases: [(&str, Prepared); 6] = [
        (
            "probe error",
            load_one_pair(failing_probes, unpadded::rewrite),
        ),
        ("no probes", load_one_pair(no_probes, unpadded::rewrite)),
        ("unknown shape", load_one_pair(probes, not_handled)),
        ("malformed", load_one_pair(probes, malformed)),
        ("refused by ONNX Runtime", load_one_pair(probes, refused)),
        ("changed results", load_one_pair(probes, changed)),
    ];
    for (case, prepared) in cases {
        assert!(prepared.one_pair_per_batch, "{case}");
        assert!(!prepared.model.is_single_unpadded(), "{case}");
    }
}

#[test]
fn every_failed_rewrite_runs_one_pair_per_batch() {
    let failing_probes = || Err(Error::tokenizer("", "probe tokenization failed".into()));
    let not_handled: Rewrite = |_| Ok(None);
    let malformed: Rewrite = |bytes| proto::parse(&bytes[..bytes.len() / 2]).map(|_| None);
    let refused: Rewrite = |_| {
        Ok(Some(per_pair::Rewritten {
            bytes: b"not an onnx graph".to_vec(),
            quantizers: 1,
        }))
    };
    let changed: Rewrite = |bytes| {
        // The original graph batched: its shared scale changes the results.
        Ok(Some(per_pair::Rewritten {
            bytes: bytes.to_vec(),
            quantizers: 0,
        }))
    };
    let cases: [(&str, Prepared); 5] = [
        ("probe error", load_int8(failing_probes, per_pair::rewrite)),
        ("unknown shape", load_int8(probes, not_handled)),
        ("malformed", load_int8(probes, malformed)),
        ("refused by ONNX Runtime", load_int8(probes, refused)),
        ("changed results", load_int8(probes, changed)),
    ];
    for (case, prepared) in cases {
        assert!(prepared.one_pair_per_batch, "{case}");
    }
}
