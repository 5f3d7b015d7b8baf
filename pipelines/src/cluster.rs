//! `crossflow scheduler` and `crossflow executor`: the nodes of an Apache
//! DataFusion Ballista cluster that runs `crossflow sql --scheduler` queries.
//! Every node loads the models itself, with the model flags it is given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use crossflow_cluster::{
    Access, ClusterFunctions, DataRoots, ExecutorMetrics, ExecutorSettings, Node, SchedulerMetrics,
    Token,
};
use crossflow_udfs::ModelSet;

use crate::dedupe::search_udf;
use crate::metrics_http::{Exposition, serve_on};
use crate::models::{BiEncoderArg, ModelArgs};
use crate::{JobError, Result};

/// The cluster's shared secret, for nodes and clients alike.
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArgs {
    /// File holding the cluster's token (at least 16 visible ASCII characters,
    /// e.g. `openssl rand -hex 32`): nodes refuse calls without it, clients and
    /// nodes send it [env CROSSFLOW_CLUSTER_TOKEN holds the token itself]
    #[arg(long, env = "CROSSFLOW_CLUSTER_TOKEN_FILE", value_name = "FILE")]
    pub cluster_token_file: Option<PathBuf>,
}

/// The environment variable that may hold the cluster token itself.
pub const TOKEN_ENV: &str = "CROSSFLOW_CLUSTER_TOKEN";

impl TokenArgs {
    /// The token from `--cluster-token-file`, else from `CROSSFLOW_CLUSTER_TOKEN`.
    pub fn token(&self) -> Result<Option<Token>> {
        if let Some(file) = &self.cluster_token_file {
            return Ok(Some(Token::from_file(file)?));
        }
        match std::env::var(TOKEN_ENV) {
            Ok(secret) => Ok(Some(Token::new(&secret)?)),
            Err(_) => Ok(None),
        }
    }
}

/// Arguments of `crossflow scheduler`.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub bi_encoder: BiEncoderArg,
    /// Address clients and executors reach the scheduler at; loopback unless
    /// told otherwise (see docs/cluster.md, Security)
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Directory the cluster's plans may read and write under (repeatable); a
    /// plan that scans or writes a file elsewhere is refused [default: anywhere]
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_roots: Vec<PathBuf>,
    /// Serve Prometheus metrics (crossflow_scheduler_executors) at HOST:PORT
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds without a poll after which an executor is lost and its tasks
    /// run again on the others (executors poll several times a second)
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(2..))]
    pub executor_timeout: u64,
}

/// Arguments of `crossflow executor`.
#[derive(Debug, Clone, Args)]
pub struct ExecutorArgs {
    #[command(flatten)]
    pub bi_encoder: BiEncoderArg,
    /// The scheduler to take tasks from, HOST:PORT
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,
    /// Address this executor serves its shuffle data on (Arrow Flight);
    /// loopback unless told otherwise (see docs/cluster.md, Security)
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: SocketAddr,
    /// Host name or address the other nodes reach this executor by
    /// [default: the --bind address; for 0.0.0.0, the address the scheduler
    /// sees this executor connect from]
    #[arg(long)]
    pub external_host: Option<String>,
    /// Tasks (scan partitions) run at once [default: the number of cores]
    #[arg(long)]
    pub vcores: Option<usize>,
    /// Directory for shuffle files [default: a new temporary directory]
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Serve Prometheus metrics (crossflow_pairs_scored_total, task counts) at HOST:PORT
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Directory this executor's tasks may read and write under (repeatable);
    /// a task that scans or writes a file elsewhere fails [default: anywhere]
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_roots: Vec<PathBuf>,
}

/// Runs a scheduler until the process is stopped.
pub async fn scheduler(args: &SchedulerArgs, models: &ModelArgs) -> Result<()> {
    let access = access(&args.token, &args.data_roots)?;
    let models = models.load_model_set(args.bi_encoder.bi_encoder.as_deref())?;
    let functions = functions(&models, Node::Scheduler, access.data_roots.clone())?;
    warn_if_exposed("scheduler", args.bind, &access);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| JobError::io(args.bind, e))?;
    let metrics = Arc::new(SchedulerMetrics::new());
    serve_metrics(args.metrics_addr, &metrics).await?;
    let timeout = std::time::Duration::from_secs(args.executor_timeout);
    crossflow_cluster::run_scheduler(listener, functions, access, metrics, timeout).await?;
    Ok(())
}

/// Serves `metrics` at `addr`, if given, on a task of their own.
async fn serve_metrics<M: Exposition>(addr: Option<SocketAddr>, metrics: &Arc<M>) -> Result<()> {
    if let Some(addr) = addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| JobError::io(addr, e))?;
        tokio::spawn(serve_on(listener, Arc::clone(metrics)));
    }
    Ok(())
}

/// Runs an executor until SIGINT / SIGTERM.
pub async fn executor(args: &ExecutorArgs, models: &ModelArgs) -> Result<()> {
    // Ballista reports a port it cannot bind only in its log: find out first.
    drop(std::net::TcpListener::bind(args.bind).map_err(|e| JobError::io(args.bind, e))?);
    let access = access(&args.token, &args.data_roots)?;
    warn_if_exposed("executor", args.bind, &access);
    let models = models.load_model_set(args.bi_encoder.bi_encoder.as_deref())?;
    let functions = functions(&models, Node::Executor, access.data_roots.clone())?;
    let loaded = std::iter::once(&models.score).chain(&models.nli).cloned();
    let metrics = Arc::new(ExecutorMetrics::new(loaded.collect()));
    serve_metrics(args.metrics_addr, &metrics).await?;
    let settings = ExecutorSettings {
        scheduler: args.scheduler.clone(),
        bind: args.bind,
        external_host: args.external_host.clone(),
        vcores: args.vcores.unwrap_or_else(default_vcores),
        work_dir: args.work_dir.clone(),
        access,
    };
    crossflow_cluster::run_executor(&settings, functions, metrics).await?;
    Ok(())
}

/// A node's token and data roots from its flags.
fn access(token: &TokenArgs, data_roots: &[PathBuf]) -> Result<Access> {
    Ok(Access {
        token: token.token()?,
        data_roots: match data_roots {
            [] => None,
            dirs => Some(DataRoots::new(dirs)?),
        },
    })
}

/// Warns that a node listening beyond loopback without a token lets anyone
/// who reaches it read and write files as this process's user.
fn warn_if_exposed(node: &str, bind: SocketAddr, access: &Access) {
    if access.data_roots.is_none() {
        tracing::info!("no --data-root: plans may read and write any file this user can");
    }
    if !bind.ip().is_loopback() && access.token.is_none() {
        tracing::warn!(
            %bind,
            "the {node} listens beyond loopback without authentication: anyone who reaches \
             {bind} can run SQL that reads and writes files as this user; \
             set --cluster-token-file on every node and client (see docs/cluster.md, Security)"
        );
    }
}

/// The functions of `models` on a `node`, and the dedupe job's candidate
/// search (reading under `roots` only, when given).
pub fn functions(
    models: &ModelSet,
    node: Node,
    roots: Option<DataRoots>,
) -> Result<Arc<ClusterFunctions>> {
    let functions = ClusterFunctions::new(models, node)?.with_function(search_udf(roots));
    Ok(Arc::new(functions))
}

fn default_vcores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
