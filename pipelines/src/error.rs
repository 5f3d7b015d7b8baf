//! Errors of crossflow's jobs.

/// Result alias of this crate.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// What can stop a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Loading or running a model failed.
    #[error(transparent)]
    Engine(#[from] crossflow::Error),
    /// Setting up SQL functions or tables failed.
    #[error(transparent)]
    Udf(#[from] crossflow_udfs::UdfError),
    /// A query failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// One statement of several failed.
    #[error("statement {number}: {source}")]
    Statement {
        number: usize,
        source: datafusion::error::DataFusionError,
    },
    /// Reading or writing Parquet failed.
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        source: datafusion::parquet::errors::ParquetError,
    },
    /// A string column holds bytes that are not UTF-8.
    #[error("column {column:?} in {path} holds text that is not valid UTF-8: {message}")]
    NotUtf8 {
        column: String,
        path: String,
        message: String,
    },
    /// Reading the rows of an input failed.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: datafusion::arrow::error::ArrowError,
    },
    /// Building or printing an Arrow batch failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A named input column does not exist.
    #[error("column {column:?} not found in {path}; its columns are: {available}")]
    MissingColumn {
        column: String,
        path: String,
        available: String,
    },
    /// An input column has a type the job cannot use.
    #[error("column {column:?} in {path} has type {found}; expected {expected}")]
    ColumnType {
        column: String,
        path: String,
        found: String,
        expected: &'static str,
    },
    /// An output column would overwrite an input column.
    #[error(
        "output column {0:?} already exists in the input; rename it or choose another output name"
    )]
    ColumnExists(String),
    /// A bundled model could not be found.
    #[error("bundled model {name} not found (looked in {looked}); pass --model DIR")]
    BundledModelMissing { name: String, looked: String },
    /// A Kafka client operation failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        source: rdkafka::error::KafkaError,
    },
    /// Another instance started with this instance's transactional id: this
    /// one is a zombie and must stop (its open transaction is aborted).
    #[error(
        "fenced: another instance took over transactional id {transactional_id:?} ({reason}); \
         this instance stops, its open transaction aborted, nothing of it committed"
    )]
    Fenced {
        transactional_id: String,
        reason: String,
    },
    /// The Kafka producer hit an error after which it cannot be used (e.g. a
    /// broker that lost its idempotence state in a crash).
    #[error(
        "the Kafka producer cannot go on after a fatal error ({reason}); nothing uncommitted \
         is lost: start the job again and it consumes from the last committed offsets"
    )]
    ProducerFailed { reason: String },
    /// A cluster node could not start or run.
    #[error(transparent)]
    Cluster(#[from] crossflow_cluster::ClusterError),
    /// Invalid command-line arguments.
    #[error("{0}")]
    Usage(String),

    /// A broken invariant of crossflow itself (a bug), reported rather than
    /// papered over.
    #[error("internal error (a bug in crossflow): {0}")]
    Internal(String),
}

/// Exit code of a job stopped because another instance took over its
/// transactional id (`enrich --guarantee exactly-once`).
pub const EXIT_FENCED: u8 = 3;

impl JobError {
    /// The process exit code for this error: [`EXIT_FENCED`] when fenced, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Fenced { .. } => EXIT_FENCED,
            _ => 1,
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn parquet(
        path: impl std::fmt::Display,
        source: datafusion::parquet::errors::ParquetError,
    ) -> Self {
        Self::Parquet {
            path: path.to_string(),
            source,
        }
    }
}
