//! The client's session (plans and submits to the cluster) and the codecs of
//! every node. The scheduler and executors keep Ballista's default sessions:
//! crossflow's functions are not in them, so a plan can only name one through
//! the codecs, which check its model fingerprint.

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use crate::access::Token;
use crate::codec::FingerprintCodec;
use crate::functions::ClusterFunctions;

/// Files smaller than this are not split into several scan partitions
/// (DataFusion's default is 10 MiB, too coarse for a model that scores a few
/// hundred pairs a second per core).
pub const REPARTITION_FILE_MIN_SIZE: usize = 64 * 1024;

/// Rows per record batch in cluster sessions. DataFusion splits a scan only
/// when the table holds more rows than one batch (8,192 by default); a model
/// scores a few hundred pairs a second per core, so a table of a few
/// thousand pairs is already worth spreading over the cluster.
pub const CLUSTER_BATCH_SIZE: usize = 256;

/// Scan partitions per query on a cluster when not given: Ballista's default.
pub const DEFAULT_PARTITIONS: usize = 16;

/// Ballista's logical and physical codecs, carrying model fingerprints.
pub fn codecs(
    functions: &Arc<ClusterFunctions>,
) -> (
    Arc<dyn LogicalExtensionCodec>,
    Arc<dyn PhysicalExtensionCodec>,
) {
    let logical: Arc<dyn LogicalExtensionCodec> =
        Arc::new(BallistaLogicalExtensionCodec::default());
    let physical: Arc<dyn PhysicalExtensionCodec> =
        Arc::new(BallistaPhysicalExtensionCodec::default());
    (
        Arc::new(FingerprintCodec::new(logical, Arc::clone(functions))),
        Arc::new(FingerprintCodec::new(physical, Arc::clone(functions))),
    )
}

/// A client session whose queries run on the cluster whose scheduler is at
/// `scheduler` (`df://HOST:PORT` or `HOST:PORT`), split into `partitions`
/// scan partitions, with crossflow's functions registered; with a `token`,
/// every call carries it. Ballista's
/// adaptive planner is off: it runs a `COPY ... TO` (scan, model and sink)
/// as one task on one executor, the static planner as one task per partition.
pub async fn remote_context(
    scheduler: &str,
    functions: Arc<ClusterFunctions>,
    partitions: usize,
    token: Option<&Token>,
) -> Result<SessionContext> {
    let (logical, physical) = codecs(&functions);
    let config = SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(logical)
        .with_ballista_physical_extension_codec(physical)
        .with_target_partitions(partitions)
        .with_repartition_file_min_size(REPARTITION_FILE_MIN_SIZE)
        .with_batch_size(CLUSTER_BATCH_SIZE)
        .with_ballista_adaptive_query_planner(false)
        // DataFusion 55 reads a float column whose statistics have min = max
        // as that constant, though Parquet statistics leave NaN out.
        .with_collect_statistics(false);
    let config = match token {
        Some(token) => config
            .with_ballista_grpc_metadata(token.grpc_metadata())
            .with_ballista_override_create_grpc_client_endpoint(token.endpoint_override()),
        None => config,
    };
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    let ctx = SessionContext::remote_with_state(&scheduler_url(scheduler), state).await?;
    for udf in functions.udfs() {
        ctx.register_udf(udf.as_ref().clone());
    }
    Ok(ctx)
}

/// Whether `ctx` runs its statements on a cluster (made by [`remote_context`]):
/// its files are written by the executors, not by this process.
pub fn is_remote(ctx: &SessionContext) -> bool {
    ctx.state()
        .config()
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_some()
}

/// `df://HOST:PORT` as Ballista expects it, also from a bare `HOST:PORT`.
pub fn scheduler_url(scheduler: &str) -> String {
    if scheduler.contains("://") {
        scheduler.to_string()
    } else {
        format!("df://{scheduler}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_the_df_scheme() {
        assert_eq!(scheduler_url("h:50050"), "df://h:50050");
        assert_eq!(scheduler_url("df://h:1"), "df://h:1");
    }
}
