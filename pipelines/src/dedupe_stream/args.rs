//! What `crossflow dedupe-stream` takes.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::decide::Matching;
use super::window::Bounds;
use crate::dedupe::Direction;
use crate::enrich::message::FieldPath;
use crate::enrich::settings::{EnrichSettings, JobArgs, KafkaArgs, Resolved};
use crate::models::ModelArgs;
use crate::{JobError, Result};

/// Messages a representative stays in the window for, by default.
pub const DEFAULT_WINDOW_MESSAGES: u64 = 10_000;

/// Flags of `crossflow dedupe-stream`: the Kafka flags of `enrich` and how
/// duplicates are found. Every one may come from `--config FILE` instead
/// (same names, snake_case).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupeStreamArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub stream: KafkaArgs,
    /// Field (or JSON pointer, /x/y) holding the text [default: text]
    #[arg(long)]
    pub text_field: Option<String>,
    /// Cross-encoder score at or above which a candidate is a duplicate (on
    /// the scale of the model's own activation, as `dedupe --threshold`) [default: 0.75]
    #[arg(long)]
    pub threshold: Option<f32>,
    /// A representative is compared with the next N messages of its
    /// partition (offsets) [default: 10000]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub window_messages: Option<u64>,
    /// ... and only with messages at most SECS newer than it (message
    /// timestamps) [default: no age bound]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub window: Option<u64>,
    /// Candidate representatives per message (bi-encoder top k) [default: 10]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: Option<u64>,
    /// Minimum bi-encoder cosine of a candidate [default: 0.75]
    #[arg(long)]
    pub min_cosine: Option<f32>,
    /// Bi-encoder directory [default: the bundled all-minilm-l6-v2]
    #[arg(long, env = "CROSSFLOW_BI_ENCODER")]
    pub bi_encoder: Option<PathBuf>,
    /// For a classifier model: the label that means "duplicate" (its
    /// probability, the lower of both directions, is the score)
    #[arg(long)]
    pub duplicate_label: Option<String>,
    /// Orders of a candidate pair the cross-encoder scores (as `dedupe
    /// --direction`) [default: mean for a score model, min for a classifier]
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    /// Compacted topic holding each partition's representatives, created if
    /// missing [default: <group-id>.dedupe-changelog]
    #[arg(long)]
    pub changelog_topic: Option<String>,
}

impl JobArgs for DedupeStreamArgs {
    const KEYS: &'static [&'static str] = &[
        "text_field",
        "threshold",
        "window_messages",
        "window",
        "top_k",
        "min_cosine",
        "bi_encoder",
        "duplicate_label",
        "changelog_topic",
        "direction",
    ];

    fn or(self, file: Self) -> Self {
        Self {
            stream: self.stream,
            text_field: self.text_field.or(file.text_field),
            threshold: self.threshold.or(file.threshold),
            window_messages: self.window_messages.or(file.window_messages),
            window: self.window.or(file.window),
            top_k: self.top_k.or(file.top_k),
            min_cosine: self.min_cosine.or(file.min_cosine),
            bi_encoder: self.bi_encoder.or(file.bi_encoder),
            duplicate_label: self.duplicate_label.or(file.duplicate_label),
            changelog_topic: self.changelog_topic.or(file.changelog_topic),
            direction: self.direction.or(file.direction),
        }
    }
}

/// Resolved settings of a dedupe-stream run.
#[derive(Debug, Clone)]
pub struct DedupeStreamSettings {
    /// The Kafka side (its text fields are both the text field).
    pub kafka: EnrichSettings,
    pub matching: Matching,
    pub bounds: Bounds,
    pub bi_encoder: Option<PathBuf>,
    pub duplicate_label: Option<String>,
    pub direction: Option<Direction>,
    pub changelog_topic: String,
}

/// `value` as an i64, at most `i64::MAX`.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl DedupeStreamArgs {
    /// Merges the flags over the settings file; fills `models` from the file
    /// where its flags were not given.
    pub fn resolve(&self, models: &mut ModelArgs) -> Result<DedupeStreamSettings> {
        let Resolved { mut settings, job } = self.stream.resolve("dedupe-stream", self, models)?;
        let text = FieldPath::new(job.text_field.as_deref().unwrap_or("text"));
        settings.fields.a = text.clone();
        settings.fields.b = text;
        let min_cosine = job.min_cosine.unwrap_or(0.75);
        if !(-1.0..=1.0).contains(&min_cosine) {
            return Err(JobError::Usage(format!(
                "--min-cosine {min_cosine}: expected a cosine in [-1, 1]"
            )));
        }
        let positive = |value: Option<u64>, key: &str| match value {
            Some(0) => Err(JobError::Usage(format!(
                "{key} 0 in --config: expected at least 1"
            ))),
            other => Ok(other),
        };
        let window_messages = positive(job.window_messages, "window_messages")?;
        let window = positive(job.window, "window")?;
        let top_k = positive(job.top_k, "top_k")?.unwrap_or(10);
        Ok(DedupeStreamSettings {
            matching: Matching {
                top_k: top_k as usize,
                min_cosine,
                threshold: job.threshold.unwrap_or(0.75),
            },
            bounds: Bounds {
                messages: Some(saturating_i64(
                    window_messages.unwrap_or(DEFAULT_WINDOW_MESSAGES),
                )),
                age_ms: window.map(|secs| saturating_i64(secs.saturating_mul(1000))),
            },
            bi_encoder: job.bi_encoder,
            duplicate_label: job.duplicate_label,
            direction: job.direction,
            changelog_topic: job
                .changelog_topic
                .unwrap_or_else(|| format!("{}.dedupe-changelog", settings.group_id)),
            kafka: settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        models: ModelArgs,
        #[command(flatten)]
        job: DedupeStreamArgs,
    }

    #[test]
    fn every_setting_can_come_from_the_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dedupe.toml");
        std::fs::write(
            &file,
            "brokers = \"b:1\"\ninput_topic = \"in\"\noutput_topic = \"out\"\ngroup_id = \"g\"\n\
             text_field = \"/body/text\"\nthreshold = 0.6\nwindow_messages = 50\nwindow = 30\n\
             top_k = 3\nmin_cosine = 0.5\nbi_encoder = \"/models/bi\"\nduplicate_label = \"same\"\n\
             direction = \"max\"\nchangelog_topic = \"state\"\n[kafka]\n\"acks\" = \"all\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap(), "--top-k", "7"]);
        let settings = cli.job.resolve(&mut cli.models.clone()).unwrap();
        assert_eq!(settings.kafka.fields.a, FieldPath::new("/body/text"));
        assert_eq!(settings.kafka.job_name, "dedupe-stream");
        assert_eq!(
            settings.matching,
            Matching {
                top_k: 7,
                min_cosine: 0.5,
                threshold: 0.6
            },
            "--top-k wins over the file"
        );
        assert_eq!(
            settings.bounds,
            Bounds {
                messages: Some(50),
                age_ms: Some(30_000)
            }
        );
        assert_eq!(settings.bi_encoder, Some(PathBuf::from("/models/bi")));
        assert_eq!(settings.duplicate_label.as_deref(), Some("same"));
        assert_eq!(settings.direction, Some(Direction::Max));
        assert_eq!(settings.changelog_topic, "state");
        assert_eq!(settings.kafka.kafka, [("acks".into(), "all".into())]);
    }

    #[test]
    fn defaults_and_refusals() {
        let base = [
            "x",
            "--brokers",
            "b:1",
            "--input-topic",
            "i",
            "--output-topic",
            "o",
        ];
        let cli = Cli::parse_from(base.iter().chain(&["--group-id", "g"]));
        let settings = cli.job.resolve(&mut cli.models.clone()).unwrap();
        assert_eq!(settings.changelog_topic, "g.dedupe-changelog");
        assert_eq!(settings.kafka.fields.a, FieldPath::new("text"));
        assert_eq!(
            settings.bounds.messages,
            Some(DEFAULT_WINDOW_MESSAGES as i64)
        );
        assert_eq!(settings.bounds.age_ms, None);
        let err = Cli::parse_from(base)
            .job
            .resolve(&mut ModelArgs::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("dedupe-stream needs --group-id"),
            "{err}"
        );
        let cli = Cli::parse_from(base.iter().chain(&["--group-id", "g", "--min-cosine", "2"]));
        let err = cli.job.resolve(&mut ModelArgs::default()).unwrap_err();
        assert!(err.to_string().contains("--min-cosine 2"), "{err}");
        let huge = [
            "--group-id",
            "g",
            "--window-messages",
            "18446744073709551615",
        ];
        let cli = Cli::parse_from(base.iter().chain(&huge));
        let settings = cli.job.resolve(&mut ModelArgs::default()).unwrap();
        assert_eq!(settings.bounds.messages, Some(i64::MAX), "saturates");
    }
}
