//! `crossflow enrich` settings: command-line flags, optionally a TOML file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use super::message::{FieldMapping, FieldPath};
use crate::models::ModelArgs;
use crate::{JobError, Result};

/// Messages per Kafka batch when neither --gather-messages nor
/// --max-batch-pairs says.
pub const DEFAULT_GATHER_MESSAGES: usize = 256;

/// Delivery guarantee of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Offsets are committed after every output of a batch is acknowledged.
    AtLeastOnce,
    /// Outputs and offsets are committed in one Kafka transaction.
    ExactlyOnce,
}

/// The Kafka flags of every stream job (`enrich`, `dedupe-stream`). Every
/// one may come from `--config FILE` instead (same names, snake_case); flags
/// win over the file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaArgs {
    /// TOML file with any of these settings (keys: brokers, input_topic, ...),
    /// a [kafka] table of librdkafka properties and a [models] table of model options
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic of the input messages (JSON objects)
    #[arg(long)]
    pub input_topic: Option<String>,
    /// Topic the output messages go to
    #[arg(long)]
    pub output_topic: Option<String>,
    /// Consumer group (instances in one group share the input partitions)
    #[arg(long)]
    pub group_id: Option<String>,
    /// Dead-letter topic for bad messages [default: <input-topic>.dlq]
    #[arg(long)]
    pub dlq_topic: Option<String>,
    /// Field (or JSON pointer) holding the message id [default: id]
    #[arg(long)]
    pub id_field: Option<String>,
    /// Wait at most this long for a Kafka batch to fill [default: 50]
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Messages gathered into one Kafka batch at most (scored together,
    /// committed together) [default: --max-batch-pairs if given, else 256]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub gather_messages: Option<u64>,
    /// at-least-once or exactly-once [default: at-least-once]
    #[arg(long, value_enum)]
    pub guarantee: Option<Guarantee>,
    /// transactional.id for exactly-once [default: crossflow-<group-id>-<hostname>-<pid>:
    /// unique per instance; zombies are fenced through the consumer group (KIP-447)]
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Serve Prometheus metrics at this address (e.g. 0.0.0.0:9464)
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds between status lines on stderr (0: none) [default: 10]
    #[arg(long)]
    pub status_secs: Option<u64>,
    /// librdkafka setting for the consumer and producer, KEY=VALUE (repeatable)
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub kafka: Vec<String>,
    /// Test hook (hidden): wait this long between producing a batch's
    /// outputs and committing its offsets (at-least-once: after their
    /// acknowledgement; exactly-once: inside the open transaction), so that a
    /// test can kill the job in that window.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub pause_before_commit_ms: Option<u64>,
}

/// Flags of `crossflow enrich`: the Kafka flags and what it adds to a pair.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub stream: KafkaArgs,
    /// Field (or JSON pointer, /x/y) holding the first text [default: a]
    #[arg(long)]
    pub a_field: Option<String>,
    /// Field (or JSON pointer) holding the second text [default: b]
    #[arg(long)]
    pub b_field: Option<String>,
    /// Add is_paraphrase = cross_score >= THRESHOLD to each output
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Also add nli_label and nli_probs from the NLI model (--nli-model)
    #[arg(long)]
    pub nli: bool,
}

/// The flags a stream job adds to [`KafkaArgs`], as read from the settings
/// file (top-level keys beside the Kafka ones).
pub trait JobArgs: Sized + Default + for<'de> Deserialize<'de> {
    /// The job's own top-level keys in the settings file.
    const KEYS: &'static [&'static str];
    /// These flags, each taken from `file` where it is not given.
    fn or(self, file: Self) -> Self;
}

impl JobArgs for EnrichArgs {
    const KEYS: &'static [&'static str] = &["a_field", "b_field", "threshold", "nli"];

    fn or(self, file: Self) -> Self {
        EnrichArgs {
            stream: self.stream,
            a_field: self.a_field.or(file.a_field),
            b_field: self.b_field.or(file.b_field),
            threshold: self.threshold.or(file.threshold),
            nli: self.nli || file.nli,
        }
    }
}

/// librdkafka settings the job's guarantees rest on, refused in `-X` and in
/// the file's `[kafka]` table.
const OWN_SETTINGS: [&str; 2] = ["enable.auto.offset.store", "enable.auto.commit"];

/// The settings file: the Kafka flags' and the job's names as keys, a
/// `[kafka]` table of librdkafka properties and a `[models]` table of model
/// options.
#[derive(Debug, Default)]
struct FileSettings<J> {
    stream: KafkaArgs,
    job: J,
    models: ModelArgs,
    kafka: BTreeMap<String, String>,
}

/// Model options that are also read as top-level keys of the settings
/// file, as in earlier versions.
const TOP_LEVEL_MODEL_KEYS: [&str; 4] =
    ["model", "nli_model", "max_batch_pairs", "max_batch_tokens"];

impl<J: JobArgs> FileSettings<J> {
    /// Reads `path` (nothing when `None`); a key that is not a setting is an
    /// error naming it.
    fn read(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| JobError::Usage(format!("--config {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|source| JobError::Config {
            path: path.display().to_string(),
            source,
        })
    }

    fn parse(text: &str) -> std::result::Result<Self, toml::de::Error> {
        let mut table: toml::Table = toml::from_str(text)?;
        let mut take = |key: &str| table.remove(key).unwrap_or(toml::Table::new().into());
        let kafka = take("kafka").try_into()?;
        let models: ModelArgs = take("models").try_into()?;
        let mut split = |keys: &[&str]| -> toml::Table {
            keys.iter()
                .filter_map(|&key| Some((key.to_string(), table.remove(key)?)))
                .collect()
        };
        let top_level = split(&TOP_LEVEL_MODEL_KEYS);
        let job = split(J::KEYS);
        Ok(Self {
            models: models.or(top_level.try_into()?),
            job: job.try_into()?,
            stream: table.try_into()?,
            kafka,
        })
    }
}

/// Resolved settings of one stream job run.
#[derive(Debug, Clone)]
pub struct EnrichSettings {
    /// The command, in status lines and errors.
    pub job_name: &'static str,
    pub brokers: String,
    pub input_topic: String,
    pub output_topic: String,
    pub group_id: String,
    pub dlq_topic: String,
    pub fields: FieldMapping,
    /// Messages gathered into one Kafka batch at most.
    pub gather_messages: usize,
    pub linger: Duration,
    pub guarantee: Guarantee,
    pub transactional_id: String,
    pub metrics_addr: Option<SocketAddr>,
    pub threshold: Option<f32>,
    pub nli: bool,
    pub status_interval: Option<Duration>,
    pub kafka: Vec<(String, String)>,
    /// See [`KafkaArgs::pause_before_commit_ms`].
    pub pause_before_commit: Option<Duration>,
}

/// A stream job's flags merged over its settings file.
pub struct Resolved<J> {
    pub settings: EnrichSettings,
    pub job: J,
}

impl KafkaArgs {
    /// These flags, each taken from `file` where it is not given (`-X`
    /// settings are kept apart, after the file's `[kafka]` table).
    fn or(self, file: KafkaArgs) -> KafkaArgs {
        KafkaArgs {
            config: self.config,
            brokers: self.brokers.or(file.brokers),
            input_topic: self.input_topic.or(file.input_topic),
            output_topic: self.output_topic.or(file.output_topic),
            group_id: self.group_id.or(file.group_id),
            dlq_topic: self.dlq_topic.or(file.dlq_topic),
            id_field: self.id_field.or(file.id_field),
            linger_ms: self.linger_ms.or(file.linger_ms),
            gather_messages: self.gather_messages.or(file.gather_messages),
            guarantee: self.guarantee.or(file.guarantee),
            transactional_id: self.transactional_id.or(file.transactional_id),
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            status_secs: self.status_secs.or(file.status_secs),
            kafka: self.kafka,
            pause_before_commit_ms: self.pause_before_commit_ms,
        }
    }

    /// Merges these flags and the job's (`job`) over the settings file; fills
    /// `models` from the file where its flags were not given. Missing required
    /// settings are errors naming `command`. The settings' text fields are
    /// `a` and `b` until the job sets them.
    pub fn resolve<J: JobArgs + Clone>(
        &self,
        command: &'static str,
        job: &J,
        models: &mut ModelArgs,
    ) -> Result<Resolved<J>> {
        let file = FileSettings::<J>::read(self.config.as_deref())?;
        *models = std::mem::take(models).or(file.models);
        let args = self.clone().or(file.stream);
        let required = |value: &Option<String>, name: &str| {
            value.clone().ok_or_else(|| {
                JobError::Usage(format!(
                    "{command} needs --{name} (or `{}` in --config)",
                    name.replace('-', "_")
                ))
            })
        };
        let input_topic = required(&args.input_topic, "input-topic")?;
        let group_id = required(&args.group_id, "group-id")?;
        let kafka = kafka_settings(file.kafka, &args.kafka)?;
        let settings = EnrichSettings {
            job_name: command,
            brokers: required(&args.brokers, "brokers")?,
            output_topic: required(&args.output_topic, "output-topic")?,
            dlq_topic: args
                .dlq_topic
                .clone()
                .unwrap_or_else(|| format!("{input_topic}.dlq")),
            fields: FieldMapping {
                a: FieldPath::new("a"),
                b: FieldPath::new("b"),
                id: FieldPath::new(args.id_field.as_deref().unwrap_or("id")),
            },
            gather_messages: gather_messages(args.gather_messages, models)?,
            linger: Duration::from_millis(args.linger_ms.unwrap_or(50)),
            guarantee: args.guarantee.unwrap_or(Guarantee::AtLeastOnce),
            transactional_id: args.transactional_id.clone().unwrap_or_else(|| {
                format!("crossflow-{group_id}-{}-{}", hostname(), std::process::id())
            }),
            metrics_addr: args.metrics_addr,
            threshold: None,
            nli: false,
            status_interval: Some(args.status_secs.unwrap_or(10))
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            kafka,
            pause_before_commit: args.pause_before_commit_ms.map(Duration::from_millis),
            input_topic,
            group_id,
        };
        Ok(Resolved {
            settings,
            job: job.clone().or(file.job),
        })
    }
}

/// The file's `[kafka]` table, then the `-X` settings; the settings the
/// job's guarantees rest on are refused.
fn kafka_settings(
    file: BTreeMap<String, String>,
    flags: &[String],
) -> Result<Vec<(String, String)>> {
    let mut kafka: Vec<(String, String)> = file.into_iter().collect();
    for setting in flags {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| JobError::Usage(format!("-X {setting:?}: expected KEY=VALUE")))?;
        kafka.push((key.to_string(), value.to_string()));
    }
    if let Some((key, _)) = kafka
        .iter()
        .find(|(key, _)| OWN_SETTINGS.contains(&key.as_str()))
    {
        return Err(JobError::Usage(format!(
            "-X {key}: crossflow sets it itself (offsets are stored only after a batch's \
             outputs are delivered, or committed in its transaction); see --guarantee"
        )));
    }
    Ok(kafka)
}

/// Messages per Kafka batch: `--gather-messages`, else `--max-batch-pairs`,
/// else [`DEFAULT_GATHER_MESSAGES`].
fn gather_messages(flag: Option<u64>, models: &ModelArgs) -> Result<usize> {
    let flag = flag
        .map(|n| match n {
            0 => Err(JobError::Usage(
                "gather_messages 0 in --config: expected at least 1".into(),
            )),
            n => Ok(n as usize),
        })
        .transpose()?;
    Ok(flag
        .or(models.max_batch_pairs)
        .unwrap_or(DEFAULT_GATHER_MESSAGES)
        .max(1))
}

impl EnrichArgs {
    /// Merges the flags over the settings file; fills `models` from the file
    /// where its flags were not given. Missing required settings are errors.
    pub fn resolve(&self, models: &mut ModelArgs) -> Result<EnrichSettings> {
        let Resolved { mut settings, job } = self.stream.resolve("enrich", self, models)?;
        let field = |value: &Option<String>, default: &str| {
            FieldPath::new(value.as_deref().unwrap_or(default))
        };
        settings.fields.a = field(&job.a_field, "a");
        settings.fields.b = field(&job.b_field, "b");
        settings.threshold = job.threshold;
        settings.nli = job.nli;
        Ok(settings)
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests;
