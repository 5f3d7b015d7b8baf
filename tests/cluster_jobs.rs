//! crossflow's other work on a Ballista cluster (a scheduler and executors in
//! this process): `embed` / `cosine` in SQL, and the `score`, `rerank` and
//! `search` jobs with `--scheduler`, each compared with the local run.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_pipelines::rerank::{self, RerankArgs};
use crossflow_pipelines::score::{self, ScoreArgs};
use crossflow_pipelines::sql::{ClusterArgs, cluster_session, execute, session};
use crossflow_tests::cluster_nodes::{
    assert_each_ran_more, assert_mismatch, models, repeated_sample, sample, small_row_groups,
    start_executor, start_scheduler, succeeded, write,
};
use crossflow_tests::{query, read_parquet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_and_cosine_on_the_cluster_equal_the_local_run_and_another_bi_encoder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    write(&path, &sample(), None);
    let table = [format!("t={}", path.display())];
    let sql = "SELECT id, embed(a) AS v, cosine(embed(a), embed(b)) AS c FROM t ORDER BY id";
    let client = models(None);
    let scheduler = start_scheduler(&models(None)).await;
    let executor = start_executor(&scheduler, models(None), &dir.path().join("w1"));
    scheduler.settle(1).await;
    let local = query(&session(&client, &table).await.unwrap(), sql).await;
    let ctx = cluster_session(&scheduler.to_string(), Some(2), None, &client, &table)
        .await
        .unwrap();
    assert_eq!(
        query(&ctx, sql).await,
        local,
        "the cluster's vectors are the local run's"
    );
    assert!(executor.tasks("succeeded") > 0);

    // An executor with another bi-encoder (shorter texts) refuses embed's tasks.
    let mut other = models(None);
    let options = crossflow::EngineOptions {
        max_length: Some(16),
        ..Default::default()
    };
    other.bi = Some(std::sync::Arc::new(
        crossflow::BiEncoder::open(crossflow_tests::bi_encoder_dir(), &options).unwrap(),
    ));
    let ours = client.bi.as_ref().unwrap().fingerprint().clone();
    let theirs = other.bi.as_ref().unwrap().fingerprint().clone();
    assert_ne!(ours, theirs);
    let scheduler = start_scheduler(&models(None)).await;
    let _executor = start_executor(&scheduler, other, &dir.path().join("w2"));
    scheduler.settle(1).await;
    let ctx = cluster_session(&scheduler.to_string(), None, None, &client, &table)
        .await
        .unwrap();
    let error = execute(&ctx, &[sql.to_string()])
        .await
        .expect_err("an executor with another bi-encoder")
        .to_string();
    assert_mismatch(&error, &ours, &theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn score_and_rerank_with_a_scheduler_write_what_the_local_runs_write() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = start_scheduler(&models(None)).await;
    let executors = [
        start_executor(&scheduler, models(None), &dir.path().join("w1")),
        start_executor(&scheduler, models(None), &dir.path().join("w2")),
    ];
    scheduler.settle(2).await;
    let on = |cluster: bool| ClusterArgs {
        scheduler: cluster.then(|| scheduler.to_string()),
        partitions: Some(4),
        ..ClusterArgs::default()
    };
    // Large enough to be split into several tasks.
    let input = dir.path().join("pairs.parquet");
    write(&input, &repeated_sample(40), Some(small_row_groups(6)));
    let score_args = |output: &str, cluster: bool| ScoreArgs {
        input: input.clone(),
        a: "a".into(),
        b: "b".into(),
        output: dir.path().join(output),
        threshold: Some(0.5),
        batch_size: 16,
        cluster: on(cluster),
    };
    let local_args = score_args("local.parquet", false);
    let model = std::sync::Arc::new(crossflow_tests::load(&crossflow_tests::sts_model_dir()));
    let job = std::sync::Arc::clone(&model);
    tokio::task::spawn_blocking(move || score::run(&local_args, &job).unwrap())
        .await
        .unwrap();
    let before = succeeded(&executors);
    let opened = CrossEncoder::open(crossflow_tests::sts_model_dir(), &EngineOptions::default());
    let summary = score::cluster::run(&score_args("cluster.parquet", true), opened.unwrap().into())
        .await
        .unwrap();
    assert_eq!(summary.rows, 48 * 40);
    let (local, remote) = (
        dir.path().join("local.parquet"),
        dir.path().join("cluster.parquet"),
    );
    assert_eq!(
        sorted_by_id(read_parquet(&remote)),
        read_parquet(&local),
        "score --scheduler"
    );
    assert_each_ran_more(&executors, &before, "the score job's tasks");
    assert!(
        executors.iter().all(|e| e.pairs_scored() > 0),
        "both executors scored"
    );

    let candidates = dir.path().join("candidates.parquet");
    write(
        &candidates,
        &as_candidates(&sample()),
        Some(small_row_groups(6)),
    );
    let rerank_args =
        |output: &str, cluster: bool| top_three(&candidates, dir.path().join(output), on(cluster));
    let set = |model| crossflow_udfs::ModelSet {
        score: model,
        nli: None,
        bi: None,
    };
    rerank::run(&rerank_args("top-local.parquet", false), &set(model))
        .await
        .unwrap();
    let client = models(None).score;
    let rows = rerank::run(&rerank_args("top-cluster.parquet", true), &set(client))
        .await
        .unwrap();
    assert_eq!(rows, 15, "3 candidates of each of 5 queries");
    let read = |name: &str| read_parquet(&dir.path().join(name));
    assert_eq!(
        read("top-cluster.parquet"),
        read("top-local.parquet"),
        "rerank --scheduler"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".crossflow-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staged outputs moved into place: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn score_and_rerank_with_a_scheduler_refuse_an_executor_with_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = start_scheduler(&models(None)).await;
    // The executor's cross-encoder reads shorter texts: another fingerprint.
    let executor = start_executor(&scheduler, models(Some(16)), &dir.path().join("w"));
    scheduler.settle(1).await;
    let (ours, theirs) = (
        models(None).score.fingerprint().clone(),
        models(Some(16)).score.fingerprint().clone(),
    );
    let cluster = ClusterArgs {
        scheduler: Some(scheduler.to_string()),
        ..ClusterArgs::default()
    };
    let input = dir.path().join("pairs.parquet");
    write(&input, &sample(), None);
    let score_args = ScoreArgs {
        input: input.clone(),
        a: "a".into(),
        b: "b".into(),
        output: dir.path().join("scored.parquet"),
        threshold: None,
        batch_size: 16,
        cluster: cluster.clone(),
    };
    let error = score::cluster::run(&score_args, models(None).score)
        .await
        .expect_err("score on an executor with another model")
        .to_string();
    assert_mismatch(&error, &ours, &theirs);
    let candidates = dir.path().join("candidates.parquet");
    write(&candidates, &as_candidates(&sample()), None);
    let rerank_args = top_three(&candidates, dir.path().join("top.parquet"), cluster);
    let error = rerank::run(&rerank_args, &models(None))
        .await
        .expect_err("rerank on an executor with another model")
        .to_string();
    assert_mismatch(&error, &ours, &theirs);
    assert_eq!(
        executor.pairs_scored(),
        0,
        "nothing scored with the other model"
    );
    for name in ["scored.parquet", "top.parquet"] {
        assert!(!dir.path().join(name).exists(), "no {name} written");
    }
}

/// `rerank` of the candidates file of [`as_candidates`]: the top 3 per query.
fn top_three(candidates: &Path, output: PathBuf, cluster: ClusterArgs) -> RerankArgs {
    RerankArgs {
        input: candidates.display().to_string(),
        output,
        top_k: 3,
        query_id_column: "query_id".into(),
        query_column: "query".into(),
        doc_id_column: "doc_id".into(),
        doc_column: "doc".into(),
        first_stage_column: None,
        fusion: 1.0,
        cluster,
    }
}

/// `batch` ordered by its `id` column.
fn sorted_by_id(batch: RecordBatch) -> RecordBatch {
    let order =
        arrow::compute::sort_to_indices(batch.column_by_name("id").unwrap(), None, None).unwrap();
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &order, None).unwrap())
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// The sample's pairs as rerank candidates: five queries (`id % 5`), the
/// first text as the query, the second as the candidate.
fn as_candidates(pairs: &RecordBatch) -> RecordBatch {
    let ids = pairs.column_by_name("id").unwrap();
    let query_ids =
        arrow::compute::kernels::numeric::rem(ids, &arrow::array::Int64Array::new_scalar(5))
            .unwrap();
    RecordBatch::try_from_iter([
        ("query_id", query_ids),
        ("query", pairs.column_by_name("a").unwrap().clone()),
        ("doc_id", ids.clone()),
        ("doc", pairs.column_by_name("b").unwrap().clone()),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_with_a_scheduler_writes_what_the_local_run_writes() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let scheduler = start_scheduler(&models(None)).await;
    let executors = [start_executor(
        &scheduler,
        models(None),
        &dir.path().join("w1"),
    )];
    scheduler.settle(1).await;
    let pairs = sample();
    let columns = |names: [(&str, &str); 2]| {
        RecordBatch::try_from_iter(
            names.map(|(to, from)| (to, pairs.column_by_name(from).unwrap().clone())),
        )
        .unwrap()
    };
    let (corpus, queries) = (
        dir.path().join("corpus.parquet"),
        dir.path().join("queries.parquet"),
    );
    write(&corpus, &columns([("doc_id", "id"), ("doc", "b")]), None);
    write(
        &queries,
        &columns([("query_id", "id"), ("query", "a")]),
        None,
    );
    let search = |output: &str, cluster: bool| {
        let output = dir.path().join(output);
        let mut args = vec![
            "crossflow".to_string(),
            "search".into(),
            "--queries".into(),
            queries.display().to_string(),
            "--corpus".into(),
            corpus.display().to_string(),
            "--top-k".into(),
            "8".into(),
            "--top-n".into(),
            "3".into(),
            "--output".into(),
            output.display().to_string(),
        ];
        if cluster {
            args.extend(["--scheduler".into(), scheduler.to_string()]);
        }
        async move {
            let cli = crossflow_pipelines::cli::Cli::try_parse_from(args).unwrap();
            crossflow_pipelines::cli::run(cli, &mut Vec::new())
                .await
                .unwrap();
            read_parquet(&output)
        }
    };
    let local = search("local.parquet", false).await;
    let before = succeeded(&executors);
    let remote = search("cluster.parquet", true).await;
    assert_eq!(local.num_rows(), 48 * 3);
    assert_eq!(remote, local, "search --scheduler");
    assert_each_ran_more(&executors, &before, "the re-ranking");
    assert!(
        executors[0].pairs_scored() > 0,
        "the executor scored the pairs"
    );
}
