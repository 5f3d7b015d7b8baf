//! The cluster's share of a dedupe job as tasks: each one SQL query on the
//! cluster, over a Parquet file staged for it in a temporary directory beside
//! the output (which every executor must be able to read). Tasks run a few
//! at a time; a failed one (an executor lost mid-task) is tried again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crossflow_udfs::register_table;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};

use crate::output_file::ScratchDir;
use crate::progress::PairProgress;
use crate::{JobError, Result};

/// Tries of one task before the job fails.
const ATTEMPTS: usize = 3;

/// One query of a stage, with the rows it reads.
#[derive(Debug)]
pub(super) struct Task {
    /// The query; it reads its input as table [`TABLE`].
    pub sql: String,
    /// Rows staged as Parquet for the query to read.
    pub input: RecordBatch,
}

/// The name a task's query reads its input by (registered under a name of
/// its own per task).
pub(super) const TABLE: &str = "task_input";

/// Runs tasks on one cluster session.
pub(super) struct Tasks {
    ctx: SessionContext,
    staging: ScratchDir,
    concurrency: usize,
    /// Tasks staged so far: names their files and tables.
    staged: AtomicUsize,
}

impl Tasks {
    /// Tasks on `ctx`, `concurrency` at a time, staging files in a new
    /// temporary directory beside `output`.
    pub fn new(ctx: SessionContext, output: &Path, concurrency: usize) -> Result<Self> {
        let staging = ScratchDir::beside(output, "crossflow-dedupe")?;
        Ok(Self {
            ctx,
            staging,
            concurrency: concurrency.max(1),
            staged: AtomicUsize::new(0),
        })
    }

    /// `items` cut into one piece per task: `per_slot` pieces per task slot,
    /// of at most `max` items; each piece with its items' indexes in `items`.
    pub fn pieces<'a, T>(
        &self,
        items: &'a [T],
        per_slot: usize,
        max: usize,
    ) -> impl Iterator<Item = (UInt64Array, &'a [T])> {
        let size = items
            .len()
            .div_ceil(self.concurrency * per_slot)
            .clamp(1, max);
        items.chunks(size).enumerate().map(move |(c, piece)| {
            let first = (c * size) as u64;
            ((first..first + piece.len() as u64).collect(), piece)
        })
    }

    /// A path in the staging directory, for files the tasks read.
    pub fn staged(&self, name: &str) -> PathBuf {
        self.staging.path().join(name)
    }

    /// Tasks run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Runs `tasks`, returning each one's rows in task order; `stage` names
    /// the stage in a progress line (tasks done / total), if there is one.
    pub async fn run(
        &self,
        stage: Option<&str>,
        tasks: Vec<Task>,
    ) -> Result<Vec<Vec<RecordBatch>>> {
        let total = tasks.len();
        let progress = stage.map(|what| PairProgress::tasks(total as u64, what));
        let results = futures::stream::iter(tasks)
            .map(|task| {
                let progress = progress.as_ref();
                async move {
                    let rows = self.run_one(&task).await?;
                    if let Some(progress) = progress {
                        progress.inc(1);
                    }
                    Ok::<_, JobError>(rows)
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await;
        if let (Some(stage), Some(progress)) = (stage, progress) {
            let seconds = progress.finish().as_secs_f64();
            tracing::info!(stage, tasks = total, seconds, "cluster stage done");
        }
        results
    }

    /// One task, tried up to [`ATTEMPTS`] times.
    async fn run_one(&self, task: &Task) -> Result<Vec<RecordBatch>> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let (table, path) = (format!("{TABLE}_{n}"), self.stage(n, &task.input)?);
        let sql = task.sql.replace(TABLE, &table);
        register_table(&self.ctx, &table, &path.display().to_string()).await?;
        let mut attempt = 1;
        let rows = loop {
            match self.query(&sql).await {
                Ok(rows) => break Ok(rows),
                Err(error) if attempt < ATTEMPTS => {
                    tracing::warn!(%error, attempt, "a cluster task failed; trying it again");
                    attempt += 1;
                }
                Err(error) => break Err(error),
            }
        };
        self.ctx.deregister_table(&table)?;
        // Read by the cluster only while the task ran.
        std::fs::remove_file(&path).map_err(|e| JobError::io(path.display(), e))?;
        rows
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }

    /// Writes task `n`'s input rows to a Parquet file of their own.
    fn stage(&self, n: usize, batch: &RecordBatch) -> Result<PathBuf> {
        let path = self.staged(&format!("task-{n}.parquet"));
        let file = std::fs::File::create(&path).map_err(|e| JobError::io(path.display(), e))?;
        let parquet = |source| JobError::parquet(path.display(), source);
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet)?;
        writer.write(batch).map_err(parquet)?;
        writer.close().map_err(parquet)?;
        Ok(path)
    }
}
