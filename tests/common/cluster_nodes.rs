//! A Ballista cluster of crossflow nodes in the test process: a scheduler and
//! one-vcore executors, each with its own loaded models, and the sample data
//! the cluster tests query.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossflow::{BiEncoder, CrossEncoder, EngineOptions, Fingerprint};
use crossflow_cluster::{Access, ExecutorMetrics, ExecutorSettings, Node, SchedulerMetrics};
use crossflow_pipelines::cluster::functions;
use crossflow_pipelines::sql::execute;
use crossflow_udfs::ModelSet;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;

use crate::enrich_io::free_port;
use crate::{bi_encoder_dir, nli_model_dir, read_parquet, repo_root, sts_model_dir};

/// A query over every crossflow function, in id order.
pub const QUERY: &str = "SELECT id, cross_score(a, b) AS s, is_paraphrase(a, b) AS p, \
     nli_label(a, b) AS label, nli_probs(a, b) AS probs FROM t ORDER BY id";

/// The bundled models, opened as the nodes open them: started on first use.
pub fn models(max_length: Option<usize>) -> ModelSet {
    let options = EngineOptions {
        max_length,
        ..EngineOptions::default()
    };
    let load = |dir: &Path| Arc::new(CrossEncoder::open(dir, &options).expect("model"));
    ModelSet {
        score: load(&sts_model_dir()),
        nli: Some(load(&nli_model_dir())),
        bi: Some(Arc::new(
            BiEncoder::open(bi_encoder_dir(), &options).expect("bi-encoder"),
        )),
    }
}

/// The bundled sample's pairs.
pub fn sample() -> RecordBatch {
    read_parquet(&repo_root().join("examples/pairs.parquet"))
}

pub fn write(path: &Path, batch: &RecordBatch, properties: Option<WriterProperties>) {
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), properties).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}

/// The sample's pairs `copies` times over, with distinct ids.
pub fn repeated_sample(copies: i64) -> RecordBatch {
    use arrow::array::{ArrayRef, AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    let pairs = sample();
    let batches: Vec<RecordBatch> = (0..copies)
        .map(|copy| {
            let ids = pairs
                .column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>();
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
                ids.values().iter().map(|id| copy * 1000 + id),
            ));
            let mut columns = pairs.columns().to_vec();
            columns[pairs.schema().index_of("id").unwrap()] = ids;
            RecordBatch::try_new(pairs.schema(), columns).unwrap()
        })
        .collect();
    arrow::compute::concat_batches(&pairs.schema(), &batches).unwrap()
}

/// Row groups of `rows` rows, no dictionary: a file that splits into many tasks.
pub fn small_row_groups(rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .set_dictionary_enabled(false)
        .build()
}

/// A scheduler running in the test process.
pub struct Scheduler {
    pub address: SocketAddr,
    metrics: Arc<SchedulerMetrics>,
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.address.fmt(f)
    }
}

impl Scheduler {
    /// Waits until `executors` executors have registered (polled for work),
    /// so that a query's tasks can go to each of them.
    pub async fn settle(&self, executors: usize) {
        let started = Instant::now();
        while self.metrics.executors().expect("the executor list") < executors {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{:?} of {executors} executors registered in 60 s",
                self.metrics.executors()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A running scheduler.
pub async fn start_scheduler(models: &ModelSet) -> Scheduler {
    start_scheduler_with(models, Access::default()).await
}

/// A running scheduler with a token and data roots if given.
pub async fn start_scheduler_with(models: &ModelSet, access: Access) -> Scheduler {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let functions = functions(models, Node::Scheduler, access.data_roots.clone()).unwrap();
    let metrics = Arc::new(SchedulerMetrics::new());
    tokio::spawn(crossflow_cluster::run_scheduler(
        listener,
        functions,
        access,
        Arc::clone(&metrics),
        std::time::Duration::from_secs(180),
    ));
    Scheduler { address, metrics }
}

/// A running one-vcore executor with its own models; its metrics.
pub fn start_executor(
    scheduler: &Scheduler,
    models: ModelSet,
    work_dir: &Path,
) -> Arc<ExecutorMetrics> {
    start_executor_with(scheduler, models, work_dir, Access::default()).0
}

/// A running one-vcore executor with a token and data roots if given; its
/// metrics and its Flight address.
pub fn start_executor_with(
    scheduler: &Scheduler,
    models: ModelSet,
    work_dir: &Path,
    access: Access,
) -> (Arc<ExecutorMetrics>, SocketAddr) {
    let loaded = vec![models.score.clone(), models.nli.clone().unwrap()];
    let metrics = Arc::new(ExecutorMetrics::new(loaded));
    let settings = ExecutorSettings {
        scheduler: scheduler.address.to_string(),
        bind: SocketAddr::from(([127, 0, 0, 1], free_port())),
        external_host: None,
        vcores: 1,
        work_dir: Some(work_dir.to_path_buf()),
        access,
    };
    let bind = settings.bind;
    let functions = functions(&models, Node::Executor, settings.access.data_roots.clone()).unwrap();
    let task_metrics = Arc::clone(&metrics);
    tokio::spawn(async move {
        if let Err(error) =
            crossflow_cluster::run_executor(&settings, functions, task_metrics).await
        {
            panic!("executor: {error}");
        }
    });
    (metrics, bind)
}

/// Models of `set` that started ONNX Runtime sessions, by name.
pub fn started(set: &ModelSet) -> Vec<String> {
    [Some(&set.score), set.nli.as_ref()]
        .into_iter()
        .flatten()
        .filter(|model| model.is_started() || model.stats().sessions > 0)
        .map(|model| model.name().to_string())
        .collect()
}

/// Tasks each executor has run to success.
pub fn succeeded(executors: &[Arc<ExecutorMetrics>]) -> Vec<u64> {
    executors.iter().map(|e| e.tasks("succeeded")).collect()
}

/// Every executor ran more tasks than `before` (from [`succeeded`]).
pub fn assert_each_ran_more(executors: &[Arc<ExecutorMetrics>], before: &[u64], what: &str) {
    for (i, (now, before)) in succeeded(executors).iter().zip(before).enumerate() {
        assert!(now > before, "executor {i} ran none of {what}");
    }
}

/// The error of `SELECT cross_score(a, b) FROM t`, which must fail (`why`).
pub async fn refused(ctx: &datafusion::prelude::SessionContext, why: &str) -> String {
    execute(ctx, &["SELECT cross_score(a, b) FROM t".to_string()])
        .await
        .expect_err(why)
        .to_string()
}

/// A fingerprint mismatch naming both fingerprints.
pub fn assert_mismatch(error: &str, ours: &Fingerprint, theirs: &Fingerprint) {
    assert!(error.contains("fingerprint"), "{error}");
    assert!(
        error.contains(&theirs.to_string()) && error.contains(&ours.to_string()),
        "{error}"
    );
}

/// Child processes, killed when the test ends however it ends.
pub struct Processes(pub Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Owned copies of `args`.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `crossflow executor` as a user starts it: one vcore, polling `scheduler`
/// (HOST:PORT), its metrics on `metrics_port`.
pub fn spawn_executor(scheduler: &str, work_dir: &Path, metrics_port: u16) -> std::process::Child {
    std::fs::create_dir_all(work_dir).unwrap();
    crate::enrich_io::spawn_binary(&strings(&[
        "executor",
        "--scheduler",
        scheduler,
        "--bind",
        &format!("127.0.0.1:{}", free_port()),
        "--vcores",
        "1",
        "--work-dir",
        work_dir.to_str().unwrap(),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ]))
}
