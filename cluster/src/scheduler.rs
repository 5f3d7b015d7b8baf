//! `crossflow scheduler`: a Ballista scheduler whose sessions know crossflow's
//! functions and check the fingerprints of the plans clients submit.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::default_session_builder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::scheduler_server::SessionBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::access::{Access, Token};
use crate::data_roots::{DataRoots, DataRootsRule};
use crate::error::{ClusterError, Result};
use crate::functions::ClusterFunctions;
use crate::metrics::SchedulerMetrics;
use crate::session::codecs;

/// Serves the scheduler on `listener` until the process ends. Executors poll
/// it for work (Ballista's pull-staged scheduling), so it never connects to
/// them. With a token, every call without it is refused (see [`Token`]);
/// with data roots, every plan that reaches outside them (see [`DataRoots`]).
/// `metrics` read the scheduler's executors once it has started. An
/// executor that has not polled for `executor_timeout` is lost: its tasks run
/// again on the others.
pub async fn run_scheduler(
    listener: TcpListener,
    functions: Arc<ClusterFunctions>,
    access: Access,
    metrics: Arc<SchedulerMetrics>,
    executor_timeout: Duration,
) -> Result<()> {
    let timeout = executor_timeout.as_secs().max(2);
    let address = listener.local_addr().map_err(ClusterError::Bind)?;
    let (logical, physical) = codecs(&functions);
    let config = SchedulerConfig {
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        override_session_builder: access.data_roots.map(checked_sessions),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 2).clamp(1, 15),
        no_executors_grace_period_seconds: timeout,
        ..SchedulerConfig::default()
    };
    config.validate().map_err(ClusterError::Ballista)?;
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ClusterError::Ballista)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::clone(&config))
            .await
            .map_err(ClusterError::Ballista)?;
    metrics.started(Arc::clone(&scheduler.state));
    tracing::info!(%address, authenticated = access.token.is_some(), "crossflow scheduler listening");
    match access.token {
        Some(token) => serve_with_token(listener, scheduler, &config, token).await,
        None => start_grpc_service_with_listener(listener, scheduler)
            .await
            .map_err(ClusterError::Ballista),
    }
}

/// Sessions whose plans are checked against the data roots before planning.
fn checked_sessions(roots: DataRoots) -> SessionBuilder {
    let rule = Arc::new(DataRootsRule(roots));
    Arc::new(move |config| {
        let state = default_session_builder(config)?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_analyzer_rule(Arc::clone(&rule) as _)
            .build())
    })
}

/// The scheduler's gRPC service alone (what Ballista serves without its
/// optional REST API, Flight SQL and proxy features), behind the token check.
async fn serve_with_token(
    listener: TcpListener,
    scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    config: &SchedulerConfig,
    token: Token,
) -> Result<()> {
    let service = SchedulerGrpcServer::new(scheduler)
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(InterceptedService::new(service, token.interceptor()));
    let router = routes.routes().into_axum_router();
    // The scheduler takes an executor's address from its connection.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .await
        .map_err(ClusterError::Serve)
}
