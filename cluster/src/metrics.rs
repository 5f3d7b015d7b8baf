//! The cluster nodes' metrics in the OpenMetrics text format: an executor's
//! scored pairs and tasks, the scheduler's registered executors.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use ballista_scheduler::state::SchedulerState;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crossflow::CrossEncoder;
use crossflow::metrics::EngineCollector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The outcome label of `crossflow_executor_tasks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Counters of one executor; the models' own counters are read from their
/// stats when the metrics are rendered ([`EngineCollector`]).
#[derive(Debug)]
pub struct ExecutorMetrics {
    engine: EngineCollector,
    tasks: Family<Outcome, Counter>,
    running: Gauge,
    registry: Registry,
}

impl ExecutorMetrics {
    /// Metrics of an executor running `models`.
    pub fn new(models: Vec<Arc<CrossEncoder>>) -> Self {
        let engine = EngineCollector::new(models).with_inference_seconds_alias();
        let (tasks, running) = (Family::default(), Gauge::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(engine.clone()));
        registry.register(
            "crossflow_executor_tasks",
            "Ballista tasks by outcome: started, succeeded, failed (errors, aborts and panics)",
            tasks.clone(),
        );
        registry.register(
            "crossflow_executor_running_tasks",
            "Ballista tasks running now",
            running.clone(),
        );
        Self {
            engine,
            tasks,
            running,
            registry,
        }
    }

    /// Pairs the models ran since the executor started.
    pub fn pairs_scored(&self) -> u64 {
        self.engine.totals().unique_pairs
    }

    /// Tasks with `outcome` (`started`, `succeeded`, `failed`).
    pub fn tasks(&self, outcome: &'static str) -> u64 {
        self.tasks.get_or_create(&Outcome { outcome }).get()
    }

    pub(crate) fn task_started(&self) {
        self.tasks
            .get_or_create(&Outcome { outcome: "started" })
            .inc();
        self.running.inc();
    }

    pub(crate) fn task_finished(&self, succeeded: bool) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.tasks.get_or_create(&Outcome { outcome }).inc();
        self.running.dec();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The scheduler's state, as the metrics read it.
type State = SchedulerState<LogicalPlanNode, PhysicalPlanNode>;

/// Metrics of a scheduler: the executors registered with it, read from its
/// state at each scrape once [`crate::run_scheduler`] has started it.
pub struct SchedulerMetrics {
    state: OnceLock<Arc<State>>,
    executors: Gauge,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for SchedulerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerMetrics")
            .field("started", &self.state.get().is_some())
            .field("executors", &self.executors.get())
            .finish()
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedulerMetrics {
    /// Metrics of a scheduler that has not started yet (no executors).
    pub fn new() -> Self {
        let executors = Gauge::default();
        let mut registry = Registry::with_prefix("crossflow");
        registry.register(
            "scheduler_executors",
            "Executors registered with this scheduler: each polled it for work and has not \
             yet been expired for missing heartbeats",
            executors.clone(),
        );
        Self {
            state: OnceLock::new(),
            executors,
            registry: Mutex::new(registry),
        }
    }

    pub(crate) fn started(&self, state: Arc<State>) {
        if self.state.set(state).is_err() {
            tracing::warn!("scheduler metrics: a second scheduler was started with them; ignored");
        }
    }

    /// Executors registered now (0 before the scheduler has started), or
    /// `None` when the scheduler's state cannot say at once.
    pub fn executors(&self) -> Option<usize> {
        let Some(state) = self.state.get() else {
            return Some(0);
        };
        match ready(state.executor_manager.get_executors_state()) {
            Some(Ok(executors)) => Some(executors.len()),
            Some(Err(error)) => {
                tracing::warn!(%error, "scheduler metrics: the executor list cannot be read");
                None
            }
            None => {
                tracing::warn!("scheduler metrics: the executor list is not in memory");
                None
            }
        }
    }

    /// The OpenMetrics text exposition; the executor gauge keeps its last
    /// value when the list cannot be read.
    pub fn render(&self) -> String {
        if let Some(executors) = self.executors() {
            self.executors.set(executors as i64);
        }
        let registry = self.registry.lock().expect("metrics registry poisoned");
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// The output of a future that completes without waiting (the scheduler's
/// in-memory cluster state reads a map behind an `async fn`), or `None`.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduler_not_started_has_no_executors_and_says_so() {
        let metrics = SchedulerMetrics::default();
        assert_eq!(metrics.executors(), Some(0));
        let text = metrics.render();
        assert!(text.contains("crossflow_scheduler_executors 0\n"), "{text}");
    }
}
