//! Who may use a crossflow cluster: a shared token required by the
//! scheduler and the executors, and data roots that plans may not leave.

use std::path::Path;

use crossflow_cluster::{Access, DataRoots, Token};
use crossflow_pipelines::sql::{cluster_session, execute, session};
use crossflow_tests::cluster_nodes::{
    QUERY, models, refused, sample, start_executor_with, start_scheduler_with, write,
};
use crossflow_tests::{query, read_parquet};

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
        start_executor_with(&scheduler, models(None), &dir.path().join("w"), access);
    scheduler.settle(1).await;

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
    start_executor_with(&scheduler, models(None), &dir.path().join("w"), access);
    scheduler.settle(1).await;
    let scheduler = scheduler.to_string();
    let ctx = |table: &Path| {
        let table = [format!("t={}", table.display())];
        let models = &standard;
        let scheduler = &scheduler;
        async move {
            cluster_session(scheduler, None, None, models, &table)
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
