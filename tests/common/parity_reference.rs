//! The references of the parity tests: stored (machine-independent: fp32,
//! sentence-transformers) or computed by Python onnxruntime on the machine
//! that runs the test (int8, whose kernels differ between instruction sets).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crossflow::{CpuInfo, CrossEncoder, EngineOptions};
use serde::Deserialize;

use super::repo_root;

/// A reference file: the pairs and each model's logits for them.
#[derive(Deserialize)]
pub struct Reference {
    pub onnxruntime: String,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    pub pairs: Vec<(String, String)>,
    pub models: HashMap<String, ModelReference>,
}

/// One model's reference: where it is and its logits, one row per pair.
#[derive(Deserialize)]
pub struct ModelReference {
    pub dir: String,
    pub onnx: String,
    pub logits: Vec<Vec<f32>>,
}

/// The CPU a reference was computed on: model name and int8-relevant features
/// (the flags of `crossflow::cpu_info::INT8_FEATURES`).
#[derive(Debug, PartialEq, Deserialize)]
pub struct Cpu {
    pub model: String,
    pub features: Vec<String>,
}

/// The stored reference file.
pub fn stored_path() -> PathBuf {
    repo_root().join("tests/data/parity_reference.json")
}

/// The stored, machine-independent references (fp32, sentence-transformers).
pub fn stored() -> Reference {
    let text = std::fs::read_to_string(stored_path()).expect("parity reference");
    serde_json::from_str(&text).expect("valid parity reference")
}

/// This machine's CPU as crossflow reads it.
pub fn this_cpu() -> Cpu {
    let host = CpuInfo::host();
    Cpu {
        model: host.model.clone(),
        features: host.features.iter().map(|f| f.to_string()).collect(),
    }
}

/// The Python that computes int8 references: `CROSSFLOW_PYTHON`, else the
/// repository's .venv (made by `scripts/setup --python`, which scripts/test runs).
pub fn python() -> PathBuf {
    std::env::var_os("CROSSFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// The ONNX Runtime version crossflow loads (`libonnxruntime.so.X.Y.Z`).
pub fn crossflow_ort_version() -> &'static str {
    crossflow::runtime::LIBRARY_NAME
        .strip_prefix("libonnxruntime.so.")
        .expect("library name carries the version")
}

/// Computes `model`'s reference logits on the stored pairs with Python
/// onnxruntime on this machine, and checks that it really was computed here,
/// by the ONNX Runtime version crossflow uses.
pub fn computed_here(model: &str) -> Reference {
    let python = python();
    assert!(
        python.exists(),
        "int8 parity compares against Python onnxruntime on this machine, and {} is missing: \
         run scripts/setup --python (scripts/test does) or set CROSSFLOW_PYTHON",
        python.display()
    );
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let run = Command::new(&python)
        .arg(repo_root().join("scripts/reference_scores.py"))
        .arg("--pairs-from")
        .arg(stored_path())
        .args(["--models", model, "--out"])
        .arg(out.path())
        .output()
        .expect("start the reference script");
    assert!(
        run.status.success(),
        "scripts/reference_scores.py --models {model} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.path()).expect("computed reference");
    let computed: Reference = serde_json::from_str(&text).expect("valid computed reference");
    assert_eq!(computed.onnxruntime, crossflow_ort_version());
    assert_eq!(computed.cpu, Some(this_cpu()), "computed on this CPU");
    assert_eq!(computed.pairs, stored().pairs, "the stored pairs");
    assert!(computed.models.contains_key(model), "{model} computed");
    computed
}

/// The reference's pairs, borrowed.
pub fn reference_pairs(reference: &Reference) -> Vec<(&str, &str)> {
    reference
        .pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

/// Loads the reference's model with `options` (its ONNX file selected).
pub fn reference_model(expected: &ModelReference, options: EngineOptions) -> CrossEncoder {
    let options = EngineOptions {
        onnx_file: Some(expected.onnx.clone().into()),
        ..options
    };
    CrossEncoder::load(repo_root().join(&expected.dir), &options).expect("load reference model")
}
