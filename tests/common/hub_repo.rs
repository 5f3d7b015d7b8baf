//! The repos of the Hub tests: the bundled score model laid out as a
//! `cross-encoder/*` repo, and a repo with no ONNX export.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Float32Type;

use crossflow_hub::HubSettings;

use crate::fake_hub::{FakeCommit, FakeHub, FakeRepo, files_of};
use crate::{crossflow_binary, read_parquet, sts_model_dir};

pub const REPO: &str = "cross-encoder/crossflow-sts";
pub const MAIN: &str = "5f1e1d5c4b3a29180706f5e4d3c2b1a098765432";
pub const V1: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
pub const INT8_VARIANTS: [&str; 4] = [
    "onnx/model_qint8_arm64.onnx",
    "onnx/model_qint8_avx512.onnx",
    "onnx/model_qint8_avx512_vnni.onnx",
    "onnx/model_quint8_avx2.onnx",
];

/// The bundled model's files as the `cross-encoder/*` repos publish theirs:
/// its graph as `onnx/model.onnx` and under each int8 variant's name, and
/// a PyTorch checkpoint nobody should fetch.
pub fn published_files() -> BTreeMap<String, Arc<Vec<u8>>> {
    let mut files = files_of(&sts_model_dir());
    let graph = files
        .remove("onnx/model_qint8_avx2.onnx")
        .expect("bundled graph");
    for name in INT8_VARIANTS.iter().chain(&["onnx/model.onnx"]) {
        files.insert(name.to_string(), graph.clone());
    }
    files.insert("model.safetensors".into(), Arc::new(vec![0; 1024]));
    files
}

pub fn start_hub() -> FakeHub {
    let files = published_files();
    let no_onnx: BTreeMap<_, _> = files
        .iter()
        .filter(|(name, _)| !name.ends_with(".onnx"))
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    FakeHub::start(vec![
        FakeRepo {
            id: REPO.into(),
            commits: vec![
                FakeCommit {
                    sha: MAIN.into(),
                    refs: vec!["main".into()],
                    files: files.clone(),
                },
                FakeCommit {
                    sha: V1.into(),
                    refs: vec!["v1".into()],
                    files,
                },
            ],
        },
        FakeRepo {
            id: "org/pytorch-only".into(),
            commits: vec![FakeCommit {
                sha: V1.into(),
                refs: vec!["main".into()],
                files: no_onnx,
            }],
        },
    ])
}

/// A Hub, an empty cache, and settings that point at both.
pub fn hub_and_cache() -> (FakeHub, tempfile::TempDir, HubSettings) {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache.path());
    (hub, cache, settings)
}

pub fn settings(hub: &FakeHub, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub.endpoint.clone(),
        token: None,
        offline: false,
        cache_dir: cache.to_path_buf(),
    }
}

/// Paths requested from the Hub, without the range.
pub fn paths(hub: &FakeHub) -> Vec<String> {
    let mut paths: Vec<String> = hub
        .requests()
        .iter()
        .map(|r| r.split(' ').next().unwrap().to_string())
        .collect();
    paths.dedup();
    paths
}

/// Runs `crossflow` with the cache and Hub of a test, nothing from the
/// user's environment.
pub fn crossflow<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    endpoint: &str,
    cache: &Path,
    offline: bool,
) -> Output {
    let mut command = std::process::Command::new(crossflow_binary());
    command
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", cache)
        .env("HF_HUB_CACHE", cache.join("hub"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("CROSSFLOW_MODEL");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    }
    command.output().expect("run crossflow")
}

pub fn score_column(path: &Path) -> Vec<Option<f32>> {
    let batch = read_parquet(path);
    let scores = batch
        .column_by_name("cross_score")
        .unwrap()
        .as_primitive::<Float32Type>();
    scores.iter().collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The int8 variant the published names imply for this machine's CPU flags.
pub fn expected_int8_variant() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        return "onnx/model_qint8_arm64.onnx";
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if flags.contains(&"avx512_vnni") {
        "onnx/model_qint8_avx512_vnni.onnx"
    } else if flags.contains(&"avx512f") {
        "onnx/model_qint8_avx512.onnx"
    } else {
        "onnx/model_quint8_avx2.onnx"
    }
}

/// `score --input INPUT --output OUTPUT --model MODEL`.
pub fn score_args(input: &Path, output: &Path, model: &str) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    [
        "score",
        "--input",
        &path(input),
        "--output",
        &path(output),
        "--model",
        model,
    ]
    .map(String::from)
    .to_vec()
}
