//! crossflow on a Ballista cluster: a scheduler and two executors in this
//! process (each executor with its own models, so its counters show the work
//! it did), queries compared with the same queries run locally, and nodes
//! with another model refused.

use std::process::Command;

use crossflow_pipelines::sql::{cluster_session, session};
use crossflow_tests::cluster_nodes::{
    Processes, QUERY, assert_each_ran_more, assert_mismatch, models, refused, repeated_sample,
    sample, small_row_groups, spawn_executor, start_executor, start_scheduler, started, strings,
    succeeded, write,
};
use crossflow_tests::enrich_io::{free_port, metric, spawn_binary as spawn, wait_for_metric};
use crossflow_tests::{crossflow_binary, query, read_parquet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_on_two_executors_equal_the_local_run_and_both_executors_score() {
    let dir = tempfile::tempdir().unwrap();
    let client = models(None);
    // The scheduler and the cluster client only plan: their models never start.
    let (planning, scheduling) = (models(None), models(None));
    let scheduler = start_scheduler(&scheduling).await;
    let executors = [
        start_executor(&scheduler, models(None), &dir.path().join("w1")),
        start_executor(&scheduler, models(None), &dir.path().join("w2")),
    ];
    scheduler.settle(2).await;

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
    let remote_ctx = cluster_session(&scheduler.to_string(), Some(4), None, &planning, &table)
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
    let remote_ctx = cluster_session(&scheduler.to_string(), Some(4), None, &planning, &table)
        .await
        .unwrap();
    assert_eq!(query(&remote_ctx, count).await, local);
    assert_each_ran_more(&executors, &before, "the one file's tasks");
    assert!(
        started(&client).len() == 2,
        "the local runs started both models"
    );
    assert_eq!(started(&scheduling), Vec::<String>::new(), "the scheduler");
    assert_eq!(
        started(&planning),
        Vec::<String>::new(),
        "the cluster client"
    );
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
    let executor = start_executor(&scheduler, models(Some(64)), &dir.path().join("w"));
    scheduler.settle(1).await;
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

#[test]
fn the_scheduler_and_executor_commands_run_sql_as_the_local_command_does() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("pairs.parquet");
    write(&table, &repeated_sample(10), Some(small_row_groups(16)));
    let scheduler = format!("127.0.0.1:{}", free_port());
    let scheduler_metrics = format!("127.0.0.1:{}", free_port());
    let mut processes = Processes(vec![spawn(&strings(&[
        "scheduler",
        "--bind",
        &scheduler,
        "--metrics-addr",
        &scheduler_metrics,
    ]))]);
    let metrics_ports = [free_port(), free_port()];
    for (i, port) in metrics_ports.iter().enumerate() {
        let work_dir = dir.path().join(format!("work-{i}"));
        processes
            .0
            .push(spawn_executor(&scheduler, &work_dir, *port));
    }
    let scheduler_port = scheduler_metrics
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    wait_for_metric(scheduler_port, "crossflow_scheduler_executors", 2.0);

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
