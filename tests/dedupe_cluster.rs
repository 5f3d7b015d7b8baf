//! `crossflow dedupe --scheduler`: the same output files as the local job,
//! with the work on two executors; executors with other models refused; an
//! executor killed mid-job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_tests::cluster_nodes::{
    Processes, assert_each_ran_more, models, sample, spawn_executor, start_executor,
    start_scheduler, strings, succeeded,
};
use crossflow_tests::dedupe_io::{dedupe_with, job_flags};
use crossflow_tests::enrich_io::{
    free_port, metric, spawn_binary, spawn_binary_logged, wait_for_metric,
};
use crossflow_tests::{read_parquet, sts_model_dir, write_parquet};

/// The sample's texts (both columns) as `(doc_id, body)` rows, with every
/// fifth text repeated: 116 rows, exact copies and paraphrases among them.
fn write_corpus(path: &Path) {
    let pairs = sample();
    let column = |name: &str| {
        let texts = pairs.column_by_name(name).unwrap();
        let texts = texts.as_any().downcast_ref::<StringArray>().unwrap();
        texts
            .iter()
            .map(|t| t.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut texts = column("a");
    texts.extend(column("b"));
    let copies: Vec<String> = texts.iter().step_by(5).cloned().collect();
    texts.extend(copies);
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..texts.len() as i64));
    let bodies: ArrayRef = Arc::new(StringArray::from(texts));
    write_parquet(path, vec![("doc_id", ids), ("body", bodies)]);
}

/// Candidates of the equality tests: a few dozen pairs.
const FEW: [&str; 2] = ["--min-cosine", "0.6"];
/// Candidates of the kill test: every pair of the 65 distinct texts (2,080),
/// more than one window of the linkage (2,048), seconds of verification.
const MANY: [&str; 3] = ["--min-cosine=-1", "--top-k", "64"];

/// Runs the job on `input` into `name` (and its pairs into [`pairs_of`])
/// under `dir`, with `more` flags ([`FEW`] candidates unless they say).
async fn run(dir: &Path, input: &Path, name: &str, more: &[&str]) -> Result<PathBuf, String> {
    let output = dir.join(name);
    let pairs = pairs_of(&output);
    let mut flags = vec!["--pairs-output", pairs.to_str().unwrap()];
    if !more.iter().any(|flag| flag.starts_with("--min-cosine")) {
        flags.extend(FEW);
    }
    flags.extend(more);
    dedupe_with(&job_flags(input, &output), &flags).await?;
    Ok(output)
}

/// Where [`run`] writes the pairs of `output`.
fn pairs_of(output: &Path) -> PathBuf {
    let name = output.file_name().unwrap().to_str().unwrap();
    output.with_file_name(format!("pairs-{name}"))
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".crossflow-dedupe.") || name.ends_with(".crossflow-tmp"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_with_a_scheduler_writes_the_local_runs_files_exact_and_ivf() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.parquet");
    write_corpus(&input);
    let scheduler = start_scheduler(&models(None)).await;
    let executors = [
        start_executor(&scheduler, models(None), &dir.path().join("w1")),
        start_executor(&scheduler, models(None), &dir.path().join("w2")),
    ];
    scheduler.settle(2).await;
    let cluster = scheduler.to_string();
    let on_cluster = ["--scheduler", cluster.as_str(), "--partitions", "4"];
    for search in [
        &["--search", "exact"][..],
        &["--search", "ivf", "--ivf-lists", "6", "--ivf-probes", "2"][..],
    ] {
        let local = run(dir.path(), &input, "local.parquet", search)
            .await
            .unwrap();
        let before = succeeded(&executors);
        let flags: Vec<&str> = search.iter().chain(&on_cluster).copied().collect();
        let remote = run(dir.path(), &input, "remote.parquet", &flags)
            .await
            .unwrap();
        assert_each_ran_more(&executors, &before, "the dedupe job's tasks");
        let (local_out, remote_out) = (read_parquet(&local), read_parquet(&remote));
        assert_eq!(remote_out, local_out, "dedupe --scheduler {search:?}");
        let pairs = |p: &Path| read_parquet(&pairs_of(p));
        assert_eq!(
            pairs(&remote),
            pairs(&local),
            "the candidate pairs {search:?}"
        );
        assert!(pairs(&local).num_rows() > 20, "the corpus has candidates");
    }
    for (i, executor) in executors.iter().enumerate() {
        assert!(executor.pairs_scored() > 0, "executor {i} scored no pair");
    }
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_with_a_scheduler_refuses_executors_with_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.parquet");
    write_corpus(&input);
    // One executor whose cross-encoder reads shorter texts, one whose
    // bi-encoder does: each job fails on the first stage that needs it.
    let mut other_cross = models(None);
    let short = EngineOptions {
        max_length: Some(16),
        ..EngineOptions::default()
    };
    other_cross.score = Arc::new(CrossEncoder::open(sts_model_dir(), &short).unwrap());
    let mut other_bi = models(None);
    other_bi.bi = models(Some(16)).bi;
    for (executor, stage) in [(other_cross, "cross_score"), (other_bi, "embed")] {
        let scheduler = start_scheduler(&models(None)).await;
        let _executor = start_executor(&scheduler, executor, &dir.path().join(stage));
        scheduler.settle(1).await;
        let cluster = scheduler.to_string();
        let error = run(
            dir.path(),
            &input,
            "out.parquet",
            &["--scheduler", &cluster],
        )
        .await
        .expect_err("an executor with another model");
        assert!(
            error.contains(stage) && error.contains("fingerprint mismatch"),
            "{stage}: {error}"
        );
        assert!(!dir.path().join("out.parquet").exists(), "no output file");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}

/// A scheduler and two one-vcore executors as a user starts them, the
/// scheduler losing an executor after 3 s without a poll; the executors'
/// metrics ports.
fn start_cluster(dir: &Path, scheduler: &str) -> (Processes, [u16; 2]) {
    let scheduler_metrics = free_port();
    let mut processes = Processes(vec![spawn_binary(&strings(&[
        "scheduler",
        "--bind",
        scheduler,
        "--executor-timeout",
        "3",
        "--metrics-addr",
        &format!("127.0.0.1:{scheduler_metrics}"),
    ]))]);
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        let work_dir = dir.join(format!("work-{i}"));
        processes
            .0
            .push(spawn_executor(scheduler, &work_dir, *port));
    }
    wait_for_metric(scheduler_metrics, "crossflow_scheduler_executors", 2.0);
    (processes, ports)
}

/// An executor killed while the job verifies: the scheduler finds it lost,
/// its tasks run again on the other executor, and the job writes the local
/// run's output. (Had the job failed instead, it would have left no output.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_job_leaves_the_output_the_local_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.parquet");
    write_corpus(&input);
    let local = run(dir.path(), &input, "local.parquet", &MANY)
        .await
        .unwrap();
    let scheduler = format!("127.0.0.1:{}", free_port());
    let (mut processes, ports) = start_cluster(dir.path(), &scheduler);
    let output = dir.path().join("remote.parquet");
    let pairs = pairs_of(&output);
    let mut args = vec!["dedupe".to_string()];
    args.extend(job_flags(&input, &output));
    args.extend(strings(&MANY));
    args.extend(strings(&[
        "--pairs-output",
        pairs.to_str().unwrap(),
        "--scheduler",
        &format!("df://{scheduler}"),
        "--partitions",
        "2",
    ]));
    let log_path = dir.path().join("job.log");
    let mut job = spawn_binary_logged(&args, &log_path);
    // Kill the first executor once it has scored pairs: the verification stage.
    let started = Instant::now();
    while metric(ports[0], "crossflow_pairs_scored_total") == 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pair scored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    processes.0[1].kill().unwrap();
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job ended before the executor was killed: give it more candidates"
    );
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            job.kill().unwrap();
            panic!(
                "the job hangs: {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "the job completes: {log}");
    assert_eq!(read_parquet(&output), read_parquet(&local), "{log}");
    let local_pairs = read_parquet(&pairs_of(&local));
    assert!(
        local_pairs.num_rows() > 2048,
        "more than one linkage window"
    );
    assert_eq!(read_parquet(&pairs), local_pairs);
    assert!(
        metric(ports[1], "crossflow_pairs_scored_total") > 0.0,
        "the other executor scored"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}
