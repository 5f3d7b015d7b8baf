//! `crossflow scheduler`: a Ballista scheduler whose sessions know crossflow's
//! functions and check the fingerprints of the plans clients submit.

use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;

use crate::error::{ClusterError, Result};
use crate::functions::ClusterFunctions;
use crate::session::codecs;

/// Serves the scheduler on `listener` until the process ends. Executors poll
/// it for work (Ballista's pull-staged scheduling), so it never connects to them.
pub async fn run_scheduler(listener: TcpListener, functions: Arc<ClusterFunctions>) -> Result<()> {
    let address = listener.local_addr().map_err(ClusterError::Bind)?;
    let (logical, physical) = codecs(&functions);
    let config = SchedulerConfig {
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        ..SchedulerConfig::default()
    };
    config.validate().map_err(ClusterError::Ballista)?;
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ClusterError::Ballista)?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(ClusterError::Ballista)?;
    tracing::info!(%address, "crossflow scheduler listening");
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(ClusterError::Ballista)
}
