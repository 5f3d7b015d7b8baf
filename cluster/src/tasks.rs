//! Counting the tasks an executor runs: Ballista's execution engine, wrapped.

use std::fmt;
use std::sync::Arc;

use ballista_core::JobId;
use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;

use crate::data_roots::DataRoots;
use crate::metrics::ExecutorMetrics;

/// Ballista's default engine, counting each task's start and outcome, and
/// refusing a task that touches files outside the data roots.
pub struct CountingEngine {
    inner: DefaultExecutionEngine,
    metrics: Arc<ExecutorMetrics>,
    data_roots: Option<DataRoots>,
}

impl CountingEngine {
    /// Counts into `metrics`; checks each task's plan against `data_roots`.
    pub fn new(metrics: Arc<ExecutorMetrics>, data_roots: Option<DataRoots>) -> Self {
        Self {
            inner: DefaultExecutionEngine::new(),
            metrics,
            data_roots,
        }
    }
}

impl ExecutionEngine for CountingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        if let Some(roots) = &self.data_roots {
            roots.check_physical(&plan)?;
        }
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(CountedStage {
            inner,
            metrics: Arc::clone(&self.metrics),
        }))
    }
}

/// One stage's executor whose runs are counted.
struct CountedStage {
    inner: Arc<dyn QueryStageExecutor>,
    metrics: Arc<ExecutorMetrics>,
}

impl fmt::Debug for CountedStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for CountedStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// A task being run: counted as finished when dropped, so a task Ballista
/// aborts (its job failed) or whose thread panics is counted as failed and
/// leaves the running gauge.
struct RunningTask<'a> {
    metrics: &'a ExecutorMetrics,
    succeeded: bool,
}

impl<'a> RunningTask<'a> {
    fn start(metrics: &'a ExecutorMetrics) -> Self {
        metrics.task_started();
        Self {
            metrics,
            succeeded: false,
        }
    }
}

impl Drop for RunningTask<'_> {
    fn drop(&mut self) {
        self.metrics.task_finished(self.succeeded);
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for CountedStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        let mut running = RunningTask::start(&self.metrics);
        let result = self.inner.execute_query_stage(task_id, context).await;
        running.succeeded = result.is_ok();
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}
