//! Models named by Hugging Face Hub id, against a Hub served by the test on
//! 127.0.0.1 (`common/fake_hub.rs`) that holds the bundled score model laid
//! out as a `cross-encoder/*` repo with several `onnx/*.onnx` variants.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_hub::{HubError, HubSettings, ResolvedModel, resolve};
use crossflow_tests::fake_hub::{FakeCommit, FakeHub, FakeRepo, Faults, files_of};
use crossflow_tests::{
    assert_refused_with, crossflow_binary, read_parquet, sts_model_dir, write_pairs_parquet,
};

const REPO: &str = "cross-encoder/crossflow-sts";
const MAIN: &str = "5f1e1d5c4b3a29180706f5e4d3c2b1a098765432";
const V1: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const INT8_VARIANTS: [&str; 4] = [
    "onnx/model_qint8_arm64.onnx",
    "onnx/model_qint8_avx512.onnx",
    "onnx/model_qint8_avx512_vnni.onnx",
    "onnx/model_quint8_avx2.onnx",
];

/// The bundled model's files as the `cross-encoder/*` repos publish theirs:
/// its graph as `onnx/model.onnx` and under each int8 variant's name, and
/// a PyTorch checkpoint nobody should fetch.
fn published_files() -> BTreeMap<String, Arc<Vec<u8>>> {
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

fn start_hub() -> FakeHub {
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

fn settings(hub: &FakeHub, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub.endpoint.clone(),
        token: None,
        offline: false,
        cache_dir: cache.to_path_buf(),
    }
}

fn resolve_id(
    id: &str,
    onnx_file: Option<&str>,
    settings: &HubSettings,
) -> Result<ResolvedModel, HubError> {
    resolve(Path::new(id), onnx_file.map(Path::new), settings)
}

fn open(model: &ResolvedModel) -> CrossEncoder {
    let options = EngineOptions {
        onnx_file: model.onnx_file.clone(),
        origin: model.origin.clone(),
        ..EngineOptions::default()
    };
    CrossEncoder::open(&model.dir, &options).unwrap()
}

/// Paths requested from the Hub, without the range.
fn paths(hub: &FakeHub) -> Vec<String> {
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
fn crossflow(args: &[&str], endpoint: &str, cache: &Path, offline: bool) -> Output {
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

fn score_column(path: &Path) -> Vec<Option<f32>> {
    let batch = read_parquet(path);
    let scores = batch
        .column_by_name("cross_score")
        .unwrap()
        .as_primitive::<Float32Type>();
    scores.iter().collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_hub_model_scores_as_its_files_do_from_a_directory_and_a_pinned_one_needs_no_request() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.parquet");
    write_pairs_parquet(&input);
    let score = |model: &str, output: &str, offline: bool| {
        let output = dir.path().join(output);
        let args = [
            "-v",
            "score",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--model",
            model,
        ];
        let run = crossflow(&args, &hub.endpoint, dir.path(), offline);
        assert!(run.status.success(), "{model}: {}", stderr(&run));
        (score_column(&output), stderr(&run))
    };
    let (local, _) = score(sts_model_dir().to_str().unwrap(), "local.parquet", false);
    let (from_hub, log) = score(REPO, "hub.parquet", false);
    assert_eq!(from_hub, local, "the same files score the same");
    assert!(
        log.contains(MAIN) && log.contains("Hub model resolved"),
        "the commit is logged: {log}"
    );
    let mut fetched = paths(&hub);
    fetched.sort();
    let resolve = |file: &str| format!("/{REPO}/resolve/{MAIN}/{file}");
    let mut expected: Vec<String> = [
        "config.json",
        "config_sentence_transformers.json",
        "onnx/model.onnx",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|f| resolve(f))
    .chain([format!("/api/models/{REPO}/revision/main")])
    .collect();
    expected.sort();
    assert_eq!(
        fetched, expected,
        "only the files the model needs, from the resolved commit"
    );

    hub.clear_requests();
    let (pinned, _) = score(&format!("{REPO}@{MAIN}"), "pinned.parquet", false);
    assert_eq!(pinned, local);
    assert_eq!(
        hub.requests(),
        Vec::<String>::new(),
        "a cached commit needs no request"
    );
    let (again, _) = score(REPO, "again.parquet", false);
    assert_eq!(again, local);
    assert_eq!(
        paths(&hub),
        [format!("/api/models/{REPO}/revision/main")],
        "a branch is resolved, its files are not fetched again"
    );
}

#[test]
fn the_commit_names_the_model_and_is_part_of_its_fingerprint() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache.path());
    let main = open(&resolve_id(REPO, None, &settings).unwrap());
    let v1 = resolve_id(&format!("{REPO}@v1"), None, &settings).unwrap();
    assert_eq!(v1.origin.as_ref().unwrap().commit, V1);
    assert_eq!(
        v1.dir,
        cache
            .path()
            .join("models--cross-encoder--crossflow-sts/snapshots")
            .join(V1)
    );
    let v1 = open(&v1);
    assert_eq!(main.name(), REPO);
    assert_eq!(
        std::fs::read(&main.files().onnx).unwrap(),
        std::fs::read(&v1.files().onnx).unwrap()
    );
    assert_ne!(
        main.fingerprint(),
        v1.fingerprint(),
        "same files, another commit"
    );
    let local = CrossEncoder::open(sts_model_dir(), &EngineOptions::default()).unwrap();
    assert_ne!(local.fingerprint(), main.fingerprint());
    assert_eq!(
        std::fs::read_to_string(
            cache
                .path()
                .join("models--cross-encoder--crossflow-sts/refs/v1")
        )
        .unwrap(),
        V1,
        "the cache's refs are those huggingface_hub writes"
    );
}

#[test]
fn offline_uses_a_warm_cache_and_names_what_a_cold_one_lacks() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let online = settings(&hub, cache.path());
    let offline = HubSettings {
        offline: true,
        ..online.clone()
    };
    let err = resolve_id(REPO, None, &offline).unwrap_err().to_string();
    for word in [REPO, "main", "offline", "models pull"] {
        assert!(err.contains(word), "{word:?} not in: {err}");
    }
    assert_eq!(
        hub.requests(),
        Vec::<String>::new(),
        "offline makes no request"
    );
    resolve_id(REPO, None, &online).unwrap();
    hub.clear_requests();
    let warm = resolve_id(REPO, None, &offline).unwrap();
    assert_eq!(warm.origin.unwrap().commit, MAIN);
    let err = resolve_id(REPO, Some("onnx/model_O1.onnx"), &offline)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("onnx/model_O1.onnx") && err.contains(REPO),
        "{err}"
    );
    let err = resolve_id(&format!("{REPO}@v1"), None, &offline)
        .unwrap_err()
        .to_string();
    assert!(err.contains("v1"), "{err}");
    assert_eq!(hub.requests(), Vec::<String>::new());
}

#[test]
fn wrong_ids_refused_access_missing_exports_and_no_network_are_errors_a_user_can_act_on() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache.path());
    let message = |id: &str, onnx: Option<&str>, settings: &HubSettings| {
        let err = resolve_id(id, onnx, settings).unwrap_err();
        (err.is_usage(), err.to_string())
    };
    let (usage, err) = message("org/unknown", None, &settings);
    assert!(
        usage && err.contains("org/unknown") && err.contains("not found"),
        "{err}"
    );
    let (_, err) = message(&format!("{REPO}@v9"), None, &settings);
    assert!(err.contains("v9") && err.contains("not found"), "{err}");
    let (_, err) = message("org/pytorch-only", None, &settings);
    assert!(
        err.contains("no ONNX export")
            && err.contains("optimum-cli export onnx --model org/pytorch-only"),
        "{err}"
    );
    let (_, err) = message(REPO, Some("onnx/model_O4.onnx"), &settings);
    assert!(err.contains("no file onnx/model_O4.onnx"), "{err}");
    let (_, err) = message("/no/such/dir", None, &settings);
    assert!(
        err.contains("no such directory") && err.contains("ORG/NAME"),
        "{err}"
    );

    hub.set_faults(Faults {
        token: Some("hf_right".into()),
        ..Faults::default()
    });
    let (usage, err) = message(REPO, None, &settings);
    assert!(
        usage && err.contains("401") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let wrong = HubSettings {
        token: Some("hf_wrong".into()),
        ..settings.clone()
    };
    let (_, err) = message(REPO, None, &wrong);
    assert!(err.contains("403") && err.contains("token given"), "{err}");
    assert!(
        !err.contains("hf_wrong"),
        "the token is never printed: {err}"
    );
    let right = HubSettings {
        token: Some("hf_right".into()),
        ..settings.clone()
    };
    resolve_id(REPO, None, &right).unwrap();

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = HubSettings {
        endpoint: endpoint.clone(),
        ..settings.clone()
    };
    let (usage, err) = message(&format!("{REPO}@v1"), None, &unreachable);
    assert!(
        !usage && err.contains("cannot reach") && err.contains(&endpoint),
        "{err}"
    );
}

#[test]
fn a_download_cut_short_leaves_nothing_a_later_run_would_trust() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let online = settings(&hub, cache.path());
    hub.set_faults(Faults {
        drop_file: Some("onnx/model.onnx".into()),
        ..Faults::default()
    });
    let err = resolve_id(REPO, None, &online).unwrap_err();
    assert!(!err.is_usage(), "{err}");
    assert!(err.to_string().contains("onnx/model.onnx"), "{err}");
    let snapshot = cache
        .path()
        .join("models--cross-encoder--crossflow-sts/snapshots")
        .join(MAIN);
    assert!(
        !snapshot.join("onnx/model.onnx").exists(),
        "no link to a partial graph"
    );
    let offline = HubSettings {
        offline: true,
        ..online.clone()
    };
    let pinned = format!("{REPO}@{MAIN}");
    let err = resolve_id(&pinned, None, &offline).unwrap_err().to_string();
    assert!(
        err.contains("missing onnx/model.onnx"),
        "the cache does not pass for complete: {err}"
    );

    hub.set_faults(Faults {
        corrupt_file: Some("onnx/model.onnx".into()),
        ..Faults::default()
    });
    let err = resolve_id(REPO, None, &online).unwrap_err().to_string();
    assert!(
        err.contains("onnx/model.onnx") && err.contains("corrupt"),
        "{err}"
    );
    assert!(
        !snapshot.join("onnx/model.onnx").exists(),
        "no link to a corrupt graph"
    );
    let blobs = snapshot.join("../../blobs");
    let graph_blobs = std::fs::read_dir(&blobs)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() > 1 << 20)
        .count();
    assert_eq!(graph_blobs, 0, "no blob of the corrupt graph is kept");

    hub.set_faults(Faults::default());
    let model = resolve_id(REPO, None, &online).unwrap();
    let graph = std::fs::read(model.dir.join("onnx/model.onnx")).unwrap();
    assert_eq!(
        graph,
        *published_files()["onnx/model.onnx"],
        "the later run completes the file"
    );
}

/// The int8 variant the published names imply for this machine's CPU flags.
fn expected_int8_variant() -> &'static str {
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

#[test]
fn auto_int8_fetches_the_variant_this_cpu_supports() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let model = resolve_id(REPO, Some("auto-int8"), &settings(&hub, cache.path())).unwrap();
    let expected = expected_int8_variant();
    assert_eq!(model.onnx_file.as_deref(), Some(Path::new(expected)));
    let graphs: Vec<String> = paths(&hub)
        .into_iter()
        .filter(|p| p.ends_with(".onnx"))
        .collect();
    assert_eq!(
        graphs,
        [format!("/{REPO}/resolve/{MAIN}/{expected}")],
        "one graph fetched"
    );
    assert_eq!(open(&model).files().onnx, model.dir.join(expected));
}

#[test]
fn models_pull_then_offline_score_and_list() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let pulled = crossflow(&["models", "pull", REPO], &hub.endpoint, dir.path(), false);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let line = String::from_utf8(pulled.stdout).unwrap();
    assert!(
        line.starts_with(&format!("{REPO} {MAIN} onnx/model.onnx ")),
        "{line}"
    );

    let input = dir.path().join("pairs.parquet");
    write_pairs_parquet(&input);
    let output = dir.path().join("scored.parquet");
    let args = [
        "score",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--model",
        REPO,
    ];
    hub.clear_requests();
    let run = crossflow(&args, &hub.endpoint, dir.path(), true);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        hub.requests(),
        Vec::<String>::new(),
        "HF_HUB_OFFLINE=1 makes no request"
    );
    assert_eq!(score_column(&output).len(), crossflow_tests::PAIRS.len());

    let listed = crossflow(&["models", "list"], &hub.endpoint, dir.path(), true);
    let table = String::from_utf8(listed.stdout).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with(REPO))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(MAIN) && row.contains("main") && row.contains("onnx/model.onnx"),
        "{row}"
    );

    let cold = tempfile::tempdir().unwrap();
    let refused = crossflow(
        &[&args[..], &["--offline"]].concat(),
        &hub.endpoint,
        cold.path(),
        false,
    );
    assert_refused_with(&refused, 2, &["offline", REPO, "main", "models pull"]);
    let refused = crossflow(
        &["models", "pull", "not-an-id"],
        &hub.endpoint,
        cold.path(),
        false,
    );
    assert_refused_with(&refused, 2, &["not-an-id", "ORG/NAME"]);
}
