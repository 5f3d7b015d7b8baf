//! crossflow on a Ballista cluster: a scheduler and two executors in this
//! process (each executor with its own models, so its counters show the work
//! it did), queries compared with the same queries run locally, and nodes
//! with another model refused.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use crossflow::{CrossEncoder, EngineOptions, Fingerprint};
use crossflow_cluster::{Access, DataRoots, ExecutorMetrics, ExecutorSettings, Node, Token};
use crossflow_pipelines::cluster::functions;
use crossflow_pipelines::sql::{cluster_session, execute, session};
use crossflow_tests::enrich_io::{free_port, metric, spawn_binary as spawn, wait_for_metric};
use crossflow_tests::{
    crossflow_binary, nli_model_dir, query, read_parquet, repo_root, sts_model_dir,
};
use crossflow_udfs::ModelSet;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;

const QUERY: &str = "SELECT id, cross_score(a, b) AS s, is_paraphrase(a, b) AS p, \
     nli_label(a, b) AS label, nli_probs(a, b) AS probs FROM t ORDER BY id";

fn models(max_length: Option<usize>) -> ModelSet {
    let options = EngineOptions {
        max_length,
        ..EngineOptions::default()
    };
    let load = |dir: &Path| Arc::new(CrossEncoder::load(dir, &options).expect("model"));
    ModelSet {
        score: load(&sts_model_dir()),
        nli: Some(load(&nli_model_dir())),
    }
}

/// The bundled sample's pairs.
fn sample() -> RecordBatch {
    read_parquet(&repo_root().join("examples/pairs.parquet"))
}

fn write(path: &Path, batch: &RecordBatch, properties: Option<WriterProperties>) {
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), properties).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}

/// The sample's pairs `copies` times over, with distinct ids.
fn repeated_sample(copies: i64) -> RecordBatch {
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
fn small_row_groups(rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .set_dictionary_enabled(false)
        .build()
}

/// A running scheduler; its address.
async fn start_scheduler(models: &ModelSet) -> SocketAddr {
    start_scheduler_with(models, Access::default()).await
}

/// A running scheduler with a token and data roots if given; its address.
async fn start_scheduler_with(models: &ModelSet, access: Access) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let functions = functions(models, Node::Scheduler).unwrap();
    tokio::spawn(crossflow_cluster::run_scheduler(
        listener, functions, access,
    ));
    address
}

/// A running one-vcore executor with its own models; its metrics.
fn start_executor(
    scheduler: SocketAddr,
    models: ModelSet,
    work_dir: &Path,
) -> Arc<ExecutorMetrics> {
    start_executor_with(scheduler, models, work_dir, Access::default()).0
}

/// A running one-vcore executor with a token and data roots if given; its
/// metrics and its Flight address.
fn start_executor_with(
    scheduler: SocketAddr,
    models: ModelSet,
    work_dir: &Path,
    access: Access,
) -> (Arc<ExecutorMetrics>, SocketAddr) {
    let loaded = vec![models.score.clone(), models.nli.clone().unwrap()];
    let metrics = Arc::new(ExecutorMetrics::new(loaded));
    let settings = ExecutorSettings {
        scheduler: scheduler.to_string(),
        bind: SocketAddr::from(([127, 0, 0, 1], free_port())),
        external_host: None,
        vcores: 1,
        work_dir: Some(work_dir.to_path_buf()),
        access,
    };
    let bind = settings.bind;
    let functions = functions(&models, Node::Executor).unwrap();
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

/// Tasks each executor has run to success.
fn succeeded(executors: &[Arc<ExecutorMetrics>]) -> Vec<u64> {
    executors.iter().map(|e| e.tasks("succeeded")).collect()
}

/// Every executor ran more tasks than `before` (from [`succeeded`]).
fn assert_each_ran_more(executors: &[Arc<ExecutorMetrics>], before: &[u64], what: &str) {
    for (i, (now, before)) in succeeded(executors).iter().zip(before).enumerate() {
        assert!(now > before, "executor {i} ran none of {what}");
    }
}

/// The error of `SELECT cross_score(a, b) FROM t`, which must fail (`why`).
async fn refused(ctx: &datafusion::prelude::SessionContext, why: &str) -> String {
    execute(ctx, &["SELECT cross_score(a, b) FROM t".to_string()])
        .await
        .expect_err(why)
        .to_string()
}

/// A fingerprint mismatch naming both fingerprints.
fn assert_mismatch(error: &str, ours: &Fingerprint, theirs: &Fingerprint) {
    assert!(error.contains("fingerprint"), "{error}");
    assert!(
        error.contains(&theirs.to_string()) && error.contains(&ours.to_string()),
        "{error}"
    );
}

/// Waits until Ballista has had time to register both executors (their first poll).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_on_two_executors_equal_the_local_run_and_both_executors_score() {
    let dir = tempfile::tempdir().unwrap();
    let client = models(None);
    let scheduler = start_scheduler(&client).await;
    let executors = [
        start_executor(scheduler, models(None), &dir.path().join("w1")),
        start_executor(scheduler, models(None), &dir.path().join("w2")),
    ];
    settle().await;

    // A table of four Parquet files.
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let pairs = sample();
    for part in 0..4 {
        let rows = pairs.slice(part * 12, 12);
        write(&files.join(format!("part-{part}.parquet")), &rows, None);
    }
    let table = [format!("t={}", files.display())];
    let local = query(&session(&client, &table).await.unwrap(), QUERY).await;
    let remote_ctx = cluster_session(&scheduler.to_string(), Some(4), None, &client, &table)
        .await
        .expect("cluster session");
    let remote = query(&remote_ctx, QUERY).await;
    assert_eq!(remote.num_rows(), 48);
    assert_eq!(local, remote, "the cluster's results are the local run's");
    for (i, executor) in executors.iter().enumerate() {
        assert!(executor.pairs_scored() > 0, "executor {i} scored no pair");
        assert!(executor.tasks("succeeded") > 0, "executor {i} ran no task");
    }
    // COPY ... TO: the scoring is spread too, the executors write the file.
    let before = succeeded(&executors);
    let output = dir.path().join("scored.parquet");
    let copy = format!(
        "COPY (SELECT id, cross_score(a, b) AS s FROM t) TO '{}' STORED AS PARQUET",
        output.display()
    );
    query(&remote_ctx, &copy).await;
    let written = read_parquet(&output);
    assert_eq!(written.num_rows(), 48);
    assert!(written.column_by_name("s").is_some());
    assert_each_ran_more(&executors, &before, "the COPY's tasks");
    let rendered = executors[0].render();
    assert!(
        rendered.contains("crossflow_pairs_scored_total "),
        "{rendered}"
    );
    assert!(
        rendered.contains("crossflow_executor_tasks_total{outcome=\"succeeded\"}"),
        "{rendered}"
    );

    // One file, split at its row groups into as many tasks as --partitions.
    let one_file = dir.path().join("one.parquet");
    write(&one_file, &repeated_sample(40), Some(small_row_groups(6)));
    assert!(
        std::fs::metadata(&one_file).unwrap().len()
            > crossflow_cluster::REPARTITION_FILE_MIN_SIZE as u64
    );
    let before = succeeded(&executors);
    let table = [format!("t={}", one_file.display())];
    let count = "SELECT count(*) AS n, sum(CAST(is_paraphrase(a, b) AS INT)) AS k FROM t";
    let local = query(&session(&client, &table).await.unwrap(), count).await;
    let remote_ctx = cluster_session(&scheduler.to_string(), Some(4), None, &client, &table)
        .await
        .unwrap();
    assert_eq!(query(&remote_ctx, count).await, local);
    assert_each_ran_more(&executors, &before, "the one file's tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_with_another_model_are_refused_with_both_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    write(&path, &sample().slice(0, 4), None);
    let table = [format!("t={}", path.display())];
    let standard = models(None);
    let shorter = models(Some(64));
    let (ours, theirs) = (standard.score.fingerprint(), shorter.score.fingerprint());
    assert_ne!(ours, theirs);

    // The scheduler refuses a client whose model differs.
    let scheduler = start_scheduler(&standard).await;
    let ctx = cluster_session(&scheduler.to_string(), None, None, &shorter, &table)
        .await
        .unwrap();
    let error = refused(&ctx, "a plan for another model").await;
    assert_mismatch(&error, ours, theirs);

    // A plain Ballista client with crossflow's functions registered sends no
    // fingerprint: refused too, not scored with whatever the nodes loaded.
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .build();
    let plain = <datafusion::prelude::SessionContext as ballista::prelude::SessionContextExt>::remote_with_state(
        &format!("df://{scheduler}"),
        state,
    )
    .await
    .unwrap();
    crossflow_udfs::register_cross_functions(&plain, &standard).unwrap();
    crossflow_udfs::register_table(&plain, "t", path.to_str().unwrap())
        .await
        .unwrap();
    let error = refused(&plain, "a plan without fingerprint").await;
    assert!(error.contains("no valid model fingerprint"), "{error}");

    // An executor with another model refuses the scheduler's tasks.
    let executor = start_executor(scheduler, models(Some(64)), &dir.path().join("w"));
    settle().await;
    let ctx = cluster_session(&scheduler.to_string(), None, None, &standard, &table)
        .await
        .unwrap();
    let error = refused(&ctx, "an executor with another model").await;
    assert_mismatch(&error, ours, theirs);
    assert_eq!(
        executor.pairs_scored(),
        0,
        "nothing was scored with the other model"
    );
}

/// Child processes, killed when the test ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn crossflow(args: &[String]) -> String {
    let output = Command::new(crossflow_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "crossflow {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn the_scheduler_and_executor_commands_run_sql_as_the_local_command_does() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("pairs.parquet");
    write(&table, &repeated_sample(10), Some(small_row_groups(16)));
    let scheduler = format!("127.0.0.1:{}", free_port());
    let mut processes = Processes(vec![spawn(&strings(&["scheduler", "--bind", &scheduler]))]);
    let metrics_ports = [free_port(), free_port()];
    for (i, port) in metrics_ports.iter().enumerate() {
        let work_dir = dir.path().join(format!("work-{i}"));
        std::fs::create_dir(&work_dir).unwrap();
        processes.0.push(spawn(&strings(&[
            "executor",
            "--scheduler",
            &scheduler,
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--vcores",
            "1",
            "--work-dir",
            work_dir.to_str().unwrap(),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])));
    }
    for port in metrics_ports {
        wait_for_metric(port, "crossflow_pairs_scored_total", 0.0);
    }
    std::thread::sleep(Duration::from_secs(2));

    let table_flag = format!("t={}", table.display());
    let query = "SELECT id, cross_score(a, b) AS s, nli_label(a, b) AS label FROM t ORDER BY id";
    let local = crossflow(&strings(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &table_flag,
        query,
    ]));
    let cluster = format!("df://{scheduler}");
    let remote = crossflow(&strings(&[
        "sql",
        "--scheduler",
        &cluster,
        "--partitions",
        "2",
        "--format",
        "csv",
        "--table",
        &table_flag,
        query,
    ]));
    assert_eq!(local.lines().count(), 481, "{local}");
    assert_eq!(remote, local);
    for port in metrics_ports {
        assert!(
            metric(port, "crossflow_pairs_scored_total") > 0.0,
            "executor on {port} scored nothing"
        );
    }

    let output = dir.path().join("scored.parquet");
    let copy = format!(
        "COPY (SELECT id, cross_score(a, b) AS s FROM t) TO '{}' STORED AS PARQUET",
        output.display()
    );
    crossflow(&strings(&[
        "sql",
        "--scheduler",
        &cluster,
        "--table",
        &table_flag,
        &copy,
    ]));
    let written = read_parquet(&output);
    assert_eq!(written.num_rows(), 480);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_a_token_serves_only_clients_that_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    write(&path, &sample().slice(0, 8), None);
    let table = [format!("t={}", path.display())];
    let token = Token::new("crossflow-test-token-0123456789").unwrap();
    let wrong = Token::new("another-token-0123456789abcdef").unwrap();
    let standard = models(None);
    let access = Access {
        token: Some(token.clone()),
        data_roots: None,
    };
    let scheduler = start_scheduler_with(&standard, access.clone()).await;
    let (executor, flight) =
        start_executor_with(scheduler, models(None), &dir.path().join("w"), access);
    settle().await;

    // With the token: the executor (which polls with it) scores, and the
    // client fetches the results from its Flight service with it.
    let ctx = cluster_session(
        &scheduler.to_string(),
        None,
        Some(&token),
        &standard,
        &table,
    )
    .await
    .unwrap();
    let local = query(&session(&standard, &table).await.unwrap(), QUERY).await;
    assert_eq!(query(&ctx, QUERY).await, local);
    assert!(executor.pairs_scored() > 0);

    // Without it, or with another: refused, saying why.
    for sent in [None, Some(&wrong)] {
        let error =
            match cluster_session(&scheduler.to_string(), None, sent, &standard, &table).await {
                Err(error) => error.to_string(),
                Ok(ctx) => refused(&ctx, "a client without the token").await,
            };
        assert!(error.contains("cluster token"), "{error}");
    }

    // The executor's shuffle data too.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{flight}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let ticket = arrow_flight::Ticket {
        ticket: b"any".to_vec().into(),
    };
    let status = client.do_get(ticket).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plans_that_reach_outside_the_data_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let inside_table = data.join("pairs.parquet");
    let outside_table = outside.join("pairs.parquet");
    write(&inside_table, &sample().slice(0, 4), None);
    write(&outside_table, &sample().slice(0, 4), None);
    let roots = DataRoots::new(std::slice::from_ref(&data)).unwrap();
    let access = Access {
        token: None,
        data_roots: Some(roots.clone()),
    };
    let standard = models(None);
    let scheduler = start_scheduler_with(&standard, access.clone()).await;
    start_executor_with(scheduler, models(None), &dir.path().join("w"), access);
    settle().await;
    let ctx = |table: &Path| {
        let table = [format!("t={}", table.display())];
        let models = &standard;
        async move {
            cluster_session(&scheduler.to_string(), None, None, models, &table)
                .await
                .unwrap()
        }
    };

    // Inside: read and written.
    let inside = ctx(&inside_table).await;
    let copy = |target: &Path| {
        format!(
            "COPY (SELECT id, cross_score(a, b) AS s FROM t) TO '{}' STORED AS PARQUET",
            target.display()
        )
    };
    execute(&inside, &[copy(&data.join("scored.parquet"))])
        .await
        .expect("a COPY inside the data roots");
    assert_eq!(read_parquet(&data.join("scored.parquet")).num_rows(), 4);

    // Outside: a table read, a COPY written (also through ..).
    let error = refused(&ctx(&outside_table).await, "a table outside the roots").await;
    assert!(
        error.contains("outside the cluster's data roots"),
        "{error}"
    );
    for target in [outside.join("x.parquet"), data.join("../outside/y.parquet")] {
        let error = execute(&inside, &[copy(&target)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("outside the cluster's data roots"),
            "{error}"
        );
        assert!(!target.exists());
    }

    // The executor's own check, on a physical plan that never met the
    // scheduler's: a scan of a file outside.
    let local = session(&standard, &[format!("t={}", outside_table.display())])
        .await
        .unwrap();
    let plan = local
        .sql("SELECT * FROM t")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let error = roots.check_physical(&plan).unwrap_err().to_string();
    assert!(
        error.contains("outside the cluster's data roots"),
        "{error}"
    );
}
