//! Models named by Hugging Face Hub id, against a Hub served by the test on
//! 127.0.0.1 (`common/fake_hub.rs`) that holds the bundled score model laid
//! out as a `cross-encoder/*` repo with several `onnx/*.onnx` variants.

use std::path::Path;

use crossflow::{CrossEncoder, EngineOptions};
use crossflow_hub::{HubError, HubSettings, ResolvedModel, resolve};
use crossflow_tests::fake_hub::Faults;
use crossflow_tests::hub_repo::{
    MAIN, REPO, V1, crossflow, expected_int8_variant, hub_and_cache, paths, published_files,
    score_args, score_column, start_hub, stderr,
};
use crossflow_tests::{assert_refused_with, sts_model_dir, write_pairs_parquet};

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

#[test]
fn a_hub_model_scores_as_its_files_do_from_a_directory_and_a_pinned_one_needs_no_request() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.parquet");
    write_pairs_parquet(&input);
    let score = |model: &str, output: &str, offline: bool| {
        let output = dir.path().join(output);
        let args = [vec!["-v".to_string()], score_args(&input, &output, model)].concat();
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
    let (_hub, cache, settings) = hub_and_cache();
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
    let (hub, _cache, online) = hub_and_cache();
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
    let (hub, _cache, settings) = hub_and_cache();
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
    let (hub, cache, online) = hub_and_cache();
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

#[test]
fn auto_int8_fetches_the_variant_this_cpu_supports() {
    let (hub, _cache, settings) = hub_and_cache();
    let model = resolve_id(REPO, Some("auto-int8"), &settings).unwrap();
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
    let args = score_args(&input, &output, REPO);
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
        &[&args[..], &["--offline".to_string()]].concat(),
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
