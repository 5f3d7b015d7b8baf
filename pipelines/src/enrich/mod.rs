//! `crossflow enrich`: Kafka stream enrichment.
//!
//! Pair messages are gathered from every assigned partition into a micro-batch
//! (up to `--gather-messages` messages or `--linger-ms`: [`gather`]), scored as
//! one batch through the engine ([`score`]), and produced to the output topic
//! (bad messages to the dead-letter topic: [`produce`]); then the batch's
//! offsets are stored for librdkafka's background commit once every output is
//! acknowledged (at-least-once), or committed inside the output transaction
//! (exactly-once) ([`commit`]). One batch is in flight at a time, so memory is bounded by
//! the batch and librdkafka's prefetch queue (`queued.max.messages.kbytes`,
//! 16 MiB by default here), whatever the lag.

mod backoff;
mod bisect;
pub(crate) mod commit;
pub(crate) mod gather;
mod group;
pub(crate) mod kafka;
pub mod message;
pub mod metrics;
pub(crate) mod outgoing;
pub(crate) mod produce;
mod score;
pub mod settings;
pub(crate) mod stream;

pub use score::Scorer;
pub use settings::{EnrichArgs, EnrichSettings, Guarantee};
pub use stream::{EnrichSummary, run};

/// Resolves the settings and loads the models of an enrich run.
pub fn prepare(
    models: &crate::models::ModelArgs,
    args: &EnrichArgs,
) -> crate::Result<(EnrichSettings, Scorer)> {
    let mut models = models.clone();
    let settings = args.resolve(&mut models)?;
    let score = models.load_score_model()?;
    let nli = if settings.nli {
        Some(models.load_nli_model()?)
    } else {
        None
    };
    // Refuses a threshold on a classifier before anything is consumed.
    let scorer = Scorer::new(score, nli, settings.threshold)?;
    Ok((settings, scorer))
}
