//! `crossflow executor`: a Ballista executor that runs crossflow's functions
//! with its own models, refusing plans made for other models.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::ConfigProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt;
use ballista_core::utils::{create_grpc_server, default_config_producer};
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::flight_service::BallistaFlightService;
use tonic::service::interceptor::InterceptedService;

use crate::access::{Access, Token};

use crate::error::{ClusterError, Result};
use crate::functions::ClusterFunctions;
use crate::metrics::ExecutorMetrics;
use crate::session::codecs;
use crate::tasks::CountingEngine;

/// Where an executor listens and whom it works for.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// Where the executor serves shuffle data (Arrow Flight) to the others.
    pub bind: SocketAddr,
    /// The host name the others reach it by [default: `bind`'s address; for
    /// an unspecified one, the address the scheduler sees it connect from].
    pub external_host: Option<String>,
    /// Tasks run at once.
    pub vcores: usize,
    /// Where shuffle files go [default: a temporary directory].
    pub work_dir: Option<PathBuf>,
    /// The cluster's token (required from every caller and sent on every
    /// call) and the directories its tasks may read and write under.
    pub access: Access,
}

/// Runs an executor until SIGINT / SIGTERM or the scheduler stops it.
pub async fn run_executor(
    settings: &ExecutorSettings,
    functions: Arc<ClusterFunctions>,
    metrics: Arc<ExecutorMetrics>,
) -> Result<()> {
    let config = process_config(settings, functions, metrics)?;
    tracing::info!(scheduler = %settings.scheduler, bind = %settings.bind,
        vcores = settings.vcores, "crossflow executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(ClusterError::Ballista)
}

fn process_config(
    settings: &ExecutorSettings,
    functions: Arc<ClusterFunctions>,
    metrics: Arc<ExecutorMetrics>,
) -> Result<ExecutorProcessConfig> {
    let (scheduler_host, scheduler_port) = split_host_port(&settings.scheduler)?;
    let (logical, physical) = codecs(&functions);
    let token = settings.access.token.as_ref();
    // Unspecified: the scheduler takes the address it sees the executor poll from.
    let external_host = settings.external_host.clone().or_else(|| {
        let ip = settings.bind.ip();
        (!ip.is_unspecified()).then(|| match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        })
    });
    Ok(ExecutorProcessConfig {
        bind_host: settings.bind.ip().to_string(),
        port: settings.bind.port(),
        external_host,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: settings.vcores,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: settings
            .work_dir
            .as_ref()
            .map(|dir| dir.display().to_string()),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        override_execution_engine: Some(Arc::new(CountingEngine::new(
            metrics,
            settings.access.data_roots.clone(),
        ))),
        override_arrow_flight_service: token.map(flight_service),
        override_create_grpc_client_endpoint: token.map(Token::endpoint_override),
        override_config_producer: token.map(task_config),
        ..ExecutorProcessConfig::default()
    })
}

/// The executor's Arrow Flight service (shuffle data) behind the token check.
fn flight_service(token: &Token) -> Arc<ArrowFlightServerProvider> {
    let token = token.clone();
    let defaults = ExecutorProcessConfig::default();
    let (encoding, decoding) = (
        defaults.grpc_max_encoding_message_size as usize,
        defaults.grpc_max_decoding_message_size as usize,
    );
    Arc::new(move |work_dir, address, mut shutdown, grpc| {
        let interceptor = token.interceptor();
        tokio::spawn(async move {
            let service = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                .max_encoding_message_size(encoding)
                .max_decoding_message_size(decoding);
            create_grpc_server(&grpc)
                .add_service(InterceptedService::new(service, interceptor))
                .serve_with_shutdown(address, shutdown.recv())
                .await
                .map_err(BallistaError::TonicError)
        })
    })
}

/// Task sessions whose shuffle fetches from other executors carry the token.
fn task_config(token: &Token) -> ConfigProducer {
    let endpoint = token.endpoint_override();
    Arc::new(move || {
        default_config_producer()
            .with_ballista_override_create_grpc_client_endpoint(Arc::clone(&endpoint))
    })
}

/// `HOST:PORT` (a name or an address) into its parts.
pub fn split_host_port(address: &str) -> Result<(String, u16)> {
    let bad = || ClusterError::Address(format!("{address:?}: expected HOST:PORT"));
    let address = address.strip_prefix("df://").unwrap_or(address);
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("scheduler:50050").unwrap(),
            ("scheduler".to_string(), 50050)
        );
        assert_eq!(
            split_host_port("df://127.0.0.1:1").unwrap(),
            ("127.0.0.1".to_string(), 1)
        );
        assert_eq!(
            split_host_port("[::1]:50050").unwrap(),
            ("[::1]".to_string(), 50050)
        );
        assert!(split_host_port("scheduler").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("h:port").is_err());
    }
}
