//! The Hugging Face cache shared across commits, offline runs and
//! processes, against the Hub of `common/fake_hub.rs`.

use std::path::Path;

use crossflow_hub::{HubSettings, resolve};
use crossflow_tests::fake_hub::Faults;
use crossflow_tests::hub_repo::{MAIN, REPO, V1, expected_int8_variant, hub_and_cache};

#[test]
fn a_new_commit_links_the_blobs_it_shares_and_downloads_nothing_again() {
    let (hub, cache, settings) = hub_and_cache();
    resolve(Path::new(REPO), None, &settings).unwrap();
    hub.clear_requests();
    let v1 = resolve(Path::new(&format!("{REPO}@v1")), None, &settings).unwrap();
    assert_eq!(v1.origin.unwrap().commit, V1);
    let bodies: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| !r.contains("/api/") && !r.ends_with("bytes=0-0"))
        .collect();
    assert_eq!(
        bodies,
        Vec::<String>::new(),
        "only the file list and each file's ETag"
    );
    let blobs = cache
        .path()
        .join("models--cross-encoder--crossflow-sts/blobs");
    let graph = |commit: &str| {
        let link = cache
            .path()
            .join("models--cross-encoder--crossflow-sts/snapshots")
            .join(commit);
        std::fs::canonicalize(link.join("onnx/model.onnx")).unwrap()
    };
    assert_eq!(graph(V1), graph(MAIN), "one blob for both commits");
    assert!(graph(V1).starts_with(std::fs::canonicalize(blobs).unwrap()));
}

#[test]
fn offline_chooses_the_graph_from_the_recorded_file_list() {
    let (_hub, _cache, online) = hub_and_cache();
    resolve(Path::new(REPO), None, &online).unwrap();
    let offline = HubSettings {
        offline: true,
        ..online
    };
    let err = resolve(Path::new(REPO), Some(Path::new("auto-int8")), &offline).unwrap_err();
    let expected = expected_int8_variant();
    assert!(
        err.to_string().contains(&format!("missing {expected}")),
        "the graph the Hub's list gives this CPU, not one of the cached: {err}"
    );
}

#[test]
fn processes_fetching_one_repo_at_once_all_get_it() {
    let (_hub, _cache, settings) = hub_and_cache();
    let fetches: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            std::thread::spawn(move || resolve(Path::new(REPO), None, &settings))
        })
        .collect();
    let dirs: Vec<_> = fetches
        .into_iter()
        .map(|f| f.join().unwrap().expect("every fetch succeeds").dir)
        .collect();
    assert!(dirs.windows(2).all(|w| w[0] == w[1]));
    assert!(dirs[0].join("onnx/model.onnx").is_file());
}

#[test]
fn without_a_token_a_refused_repo_may_also_not_exist() {
    let (hub, _cache, settings) = hub_and_cache();
    hub.set_faults(Faults {
        token: Some("hf_right".into()),
        ..Faults::default()
    });
    let err = resolve(Path::new("org/typo"), None, &settings)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("check the id") && err.contains("HF_TOKEN"),
        "{err}"
    );
}
