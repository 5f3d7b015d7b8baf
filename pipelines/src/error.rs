//! Errors of crossflow's jobs.

/// Result alias of this crate.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// What can stop a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Loading or running a model failed.
    #[error(transparent)]
    Engine(#[from] crossflow::Error),
    /// A model named by Hub repo id could not be resolved.
    #[error(transparent)]
    Hub(#[from] crossflow_hub::HubError),
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
    /// An input file is not Parquet, or not readable as Parquet.
    #[error("{path}: not readable as Parquet: {source}")]
    InputParquet {
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
    /// A dedupe search index could not be written or read.
    #[error(transparent)]
    SearchIndex(#[from] crate::dedupe::index_file::IndexFileError),
    /// Invalid command-line arguments: a value, or flags that do not go
    /// together, whatever the input.
    #[error("{0}")]
    Usage(String),
    /// A settings file (`--config`) that cannot be read as its format.
    #[error("{path}: {source}")]
    Config {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    /// Input data the job cannot use as asked: a column a flag names is
    /// missing or of another type, rows break a rule of the job.
    #[error("{0}")]
    InvalidData(String),
    /// Every message of a batch of several failed in the engine: the error
    /// is not the messages' (enrich stops, nothing committed).
    #[error("the engine failed on every message of a batch of {failed}: {source}")]
    BatchFailed {
        failed: usize,
        #[source]
        source: Box<JobError>,
    },
    /// The dead-letter topic refused a dead letter for a reason other than
    /// its size.
    #[error("the dead-letter topic {topic} refuses the dead letter of {input}: {reason}")]
    DeadLetterRefused {
        topic: String,
        /// The input message, `topic/partition@offset`.
        input: String,
        reason: String,
    },
    /// The state topic (a changelog) refused one of the job's state records:
    /// the job stops rather than lose state, nothing committed.
    #[error(
        "the state topic {topic} refuses a record: {reason}; raise the topic's \
         max.message.bytes (and the producer's message.max.bytes with -X)"
    )]
    StateRefused { topic: String, reason: String },

    /// A broken invariant of crossflow itself (a bug), reported rather than
    /// papered over.
    #[error("internal error (a bug in crossflow): {0}")]
    Internal(String),
}

/// Exit code of a job that failed while running (a model, Kafka, a file
/// that could not be written, a bug).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a command line that cannot be run, whatever the input (as
/// clap's own parse errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a job stopped because another instance took over its
/// transactional id (`enrich --guarantee exactly-once`).
pub const EXIT_FENCED: u8 = 3;
/// Exit code of input data the job cannot use as asked (a missing or
/// ill-typed column, text that is not UTF-8, rows that break a rule).
pub const EXIT_DATA: u8 = 4;

impl JobError {
    /// The process exit code for this error: [`EXIT_USAGE`],
    /// [`EXIT_DATA`], [`EXIT_FENCED`] or [`EXIT_RUNTIME`].
    pub fn exit_code(&self) -> u8 {
        if let Some(engine) = self.engine_error() {
            if engine.is_usage() {
                return EXIT_USAGE;
            }
            if engine.is_invalid_input() {
                return EXIT_DATA;
            }
        }
        match self {
            Self::Usage(_) | Self::Config { .. } | Self::BundledModelMissing { .. } => EXIT_USAGE,
            Self::Engine(error) if error.is_usage() => EXIT_USAGE,
            Self::Hub(error) if error.is_usage() => EXIT_USAGE,
            Self::Udf(
                crossflow_udfs::UdfError::WrongModel { .. }
                | crossflow_udfs::UdfError::UnknownFormat { .. }
                | crossflow_udfs::UdfError::InvalidTableSpec(_),
            ) => EXIT_USAGE,
            Self::Cluster(
                crossflow_cluster::ClusterError::Address(_)
                | crossflow_cluster::ClusterError::DataRoot(_)
                | crossflow_cluster::ClusterError::Token(_),
            ) => EXIT_USAGE,
            Self::DataFusion(error) | Self::Statement { source: error, .. }
                if is_statement_error(error) =>
            {
                EXIT_USAGE
            }
            Self::InvalidData(_)
            | Self::ColumnExists(_)
            | Self::MissingColumn { .. }
            | Self::ColumnType { .. }
            | Self::NotUtf8 { .. }
            | Self::InputParquet { .. }
            | Self::Read { .. } => EXIT_DATA,
            Self::Engine(error) if error.is_invalid_input() => EXIT_DATA,
            Self::Fenced { .. } => EXIT_FENCED,
            _ => EXIT_RUNTIME,
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn input_parquet(
        path: impl std::fmt::Display,
        source: datafusion::parquet::errors::ParquetError,
    ) -> Self {
        Self::InputParquet {
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

impl JobError {
    /// The engine's error behind this one: the engine's own, or one a SQL
    /// function raised inside a query (see [`crossflow_udfs::FunctionError`]).
    fn engine_error(&self) -> Option<&crossflow::Error> {
        match self {
            Self::Engine(error) => Some(error),
            Self::DataFusion(error) | Self::Statement { source: error, .. } => {
                engine_error_in(error)
            }
            Self::Udf(error) => engine_error_in(error),
            _ => None,
        }
    }
}

/// The first engine error in `error`'s source chain, `error` included.
fn engine_error_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crossflow::Error> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
}

/// Whether a DataFusion error is in the statement itself (SQL that does not
/// parse or plan: a syntax error, an unknown table, column or function).
fn is_statement_error(error: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    matches!(
        error.find_root(),
        E::SQL(..) | E::Plan(..) | E::SchemaError(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossflow_udfs::FunctionError;

    #[test]
    fn an_engine_error_inside_a_query_keeps_its_kind_and_source() {
        let inside = |engine| {
            let error = FunctionError::wrap("cross_score", engine).context("statement 1");
            JobError::DataFusion(error)
        };
        let usage = inside(crossflow::Error::InvalidSetting("--max-length 2".into()));
        assert_eq!(usage.exit_code(), EXIT_USAGE, "{usage}");
        let data = inside(crossflow::Error::InvalidInput("not texts".into()));
        assert_eq!(data.exit_code(), EXIT_DATA, "{data}");
        let runtime = inside(crossflow::Error::Scheduler("workers stopped".into()));
        assert_eq!(runtime.exit_code(), EXIT_RUNTIME, "{runtime}");
        assert!(
            usage.to_string().contains("cross_score: --max-length 2"),
            "{usage}"
        );
        assert!(
            usage.engine_error().is_some(),
            "the engine error is in the chain"
        );
    }
}
