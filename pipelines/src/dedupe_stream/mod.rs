//! `crossflow dedupe-stream`: paraphrase duplicates flagged on a Kafka
//! stream, the streaming form of the dedupe job's centre linkage.
//!
//! Each input message is compared with the earlier *representatives* (the
//! messages that were not duplicates) of its partition still in the window
//! ([`window`]): exact normalised copies, then the bi-encoder's top-k
//! candidates verified by the cross-encoder; it is a duplicate of the
//! earliest one it matches, else a representative itself ([`decide`]). The
//! representatives are kept in a compacted changelog topic and restored when
//! a partition is assigned ([`changelog`]), so a decision never depends on
//! whether the job was restarted or rebalanced. The Kafka side is enrich's
//! (micro-batches, dead letters, at-least-once or exactly-once, metrics).

mod args;
pub mod changelog;
pub mod decide;
mod job;
mod metrics;
mod records;
pub mod window;

use crossflow::BiEncoder;

pub use args::{DEFAULT_WINDOW_MESSAGES, DedupeStreamArgs, DedupeStreamSettings};
pub use job::{DedupeStreamSummary, run};

use crate::Result;
use crate::dedupe::verify::Verifier;
use crate::models::ModelArgs;

/// The models of a dedupe-stream run.
pub struct Engines {
    bi_encoder: BiEncoder,
    verifier: Verifier,
}

/// Resolves the settings and loads the models (a threshold off the model's
/// scale, or a classifier without `--duplicate-label`, is refused here).
pub fn prepare(
    models: &ModelArgs,
    args: &DedupeStreamArgs,
) -> Result<(DedupeStreamSettings, Engines)> {
    let mut models = models.clone();
    let settings = args.resolve(&mut models)?;
    if models.batch_invariant == Some(crate::models::BatchInvariance::Off) {
        tracing::warn!(
            "--batch-invariant off: a pair's score depends on the batch it is run in, so a \
             message consumed again after a restart can be decided differently"
        );
    }
    if models.overrides_activation() {
        tracing::warn!(activation = ?models.activation,
            "dedupe-stream scores with the model's own activation; --activation is ignored");
    }
    let verifier = Verifier::new(
        models.load_score_model_as_configured()?,
        settings.duplicate_label.as_deref(),
        settings.matching.threshold,
        settings.direction,
    )?;
    let bi_encoder = models.load_bi_encoder(settings.bi_encoder.as_deref())?;
    Ok((
        settings,
        Engines {
            bi_encoder,
            verifier,
        },
    ))
}
