//! The engine's counters as Prometheus metrics: one [`EngineCollector`] that
//! every exporter (the enrich job, the cluster's executors) registers, read
//! from the models' [`StatsSnapshot`]s at each scrape, so each metric has
//! one name, one meaning and one help text wherever it is served.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::{CrossEncoder, StatsSnapshot};

/// Exports the counters of a set of models, summed over them.
#[derive(Debug, Clone)]
pub struct EngineCollector {
    models: Vec<Arc<CrossEncoder>>,
    /// Also export `crossflow_onnx_seconds` as `crossflow_inference_seconds`
    /// (the cluster executors' former name for it).
    inference_seconds_alias: bool,
}

impl EngineCollector {
    /// A collector of `models`' counters.
    pub fn new(models: Vec<Arc<CrossEncoder>>) -> Self {
        Self {
            models,
            inference_seconds_alias: false,
        }
    }

    /// Also exports the time inside ONNX Runtime under its deprecated name
    /// `crossflow_inference_seconds_total`.
    pub fn with_inference_seconds_alias(mut self) -> Self {
        self.inference_seconds_alias = true;
        self
    }

    /// The models' counters, summed.
    pub fn totals(&self) -> StatsSnapshot {
        self.models.iter().map(|model| model.stats()).sum()
    }
}

type Encoded = Result<(), std::fmt::Error>;

fn counter<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> Encoded
where
    N: prometheus_client::encoding::EncodeCounterValue,
{
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> Encoded
where
    N: prometheus_client::encoding::EncodeGaugeValue,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Encoded {
        let s = self.totals();
        let e = &mut encoder;
        counter(
            e,
            "crossflow_pairs_scored",
            "Distinct pairs run through the models (cache hits, repeats within a call and null rows excluded)",
            s.unique_pairs,
        )?;
        counter(
            e,
            "crossflow_truncated_pairs",
            "Pairs cut to the model's maximum length",
            s.truncated_pairs,
        )?;
        counter(
            e,
            "crossflow_cache_hits",
            "Distinct pairs answered from the score cache",
            s.cache_hits,
        )?;
        counter(
            e,
            "crossflow_cache_misses",
            "Distinct pairs looked up in the score cache and run through a model",
            s.cache_misses,
        )?;
        gauge(
            e,
            "crossflow_cache_hit_ratio",
            "Share of score-cache lookups that hit, since the models were opened (0 before the first lookup)",
            s.cache_hit_rate().unwrap_or(0.0),
        )?;
        counter(
            e,
            "crossflow_onnx_batches",
            "ONNX Runtime batches the models' sessions ran",
            s.batches,
        )?;
        let onnx_seconds = s.inference_time.as_secs_f64();
        counter(
            e,
            "crossflow_onnx_seconds",
            "Seconds spent inside ONNX Runtime, summed over sessions",
            onnx_seconds,
        )?;
        if self.inference_seconds_alias {
            counter(
                e,
                "crossflow_inference_seconds",
                "Deprecated name of crossflow_onnx_seconds, kept for one release",
                onnx_seconds,
            )?;
        }
        gauge(
            e,
            "crossflow_model_sessions",
            "ONNX Runtime sessions the models run on (0 for a model not started)",
            s.sessions as i64,
        )?;
        gauge(
            e,
            "crossflow_queue_depth",
            "Pairs waiting in the models' queues",
            s.queue_depth as i64,
        )?;
        counter(
            e,
            "crossflow_queue_wait_seconds",
            "Time pairs waited in the models' queues before a session took them, summed over pairs",
            s.queue_wait_time.as_secs_f64(),
        )?;
        counter(
            e,
            "crossflow_merged_batches",
            "ONNX Runtime batches that held pairs of more than one call",
            s.merged_batches,
        )?;
        counter(
            e,
            "crossflow_queue_full_waits",
            "Times a caller waited for room in a model's full queue",
            s.admission_waits,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{EngineOptions, Texts};

    fn render(collector: EngineCollector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn the_models_counters_are_read_at_each_scrape() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/crossflow-sts-minilm-l6");
        let options = EngineOptions {
            cache_pairs: 100,
            sessions: Some(1),
            ..EngineOptions::default()
        };
        let model = Arc::new(CrossEncoder::open(dir, &options).unwrap());
        let collector = EngineCollector::new(vec![model.clone()]);
        let before = render(collector.clone());
        for line in [
            "crossflow_pairs_scored_total 0\n",
            "crossflow_model_sessions 0\n",
        ] {
            assert!(before.contains(line), "{line} in\n{before}");
        }
        assert!(!before.contains("crossflow_inference_seconds"), "{before}");
        let a = arrow::array::StringArray::from(vec!["a cat", "a cat", "a dog"]);
        let b = arrow::array::StringArray::from(vec!["a kitten", "a kitten", "a puppy"]);
        model.score(&Texts::Utf8(&a), &Texts::Utf8(&b)).unwrap();
        model.score(&Texts::Utf8(&a), &Texts::Utf8(&b)).unwrap();
        let after = render(collector.with_inference_seconds_alias());
        for line in [
            "crossflow_pairs_scored_total 2\n",
            "crossflow_cache_hits_total 2\n",
            "crossflow_cache_misses_total 2\n",
            "crossflow_cache_hit_ratio 0.5\n",
            "crossflow_model_sessions 1\n",
        ] {
            assert!(after.contains(line), "{line} in\n{after}");
        }
        let seconds = |name: &str| -> f64 {
            let line = after.lines().find(|l| l.starts_with(name)).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(seconds("crossflow_onnx_seconds_total") > 0.0, "{after}");
        assert_eq!(
            seconds("crossflow_onnx_seconds_total"),
            seconds("crossflow_inference_seconds_total")
        );
    }
}
