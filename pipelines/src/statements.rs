//! Running the statements of one `crossflow sql` call so that a bad
//! statement is found before any file is written.
//!
//! Every statement is parsed before the first one is planned. Statements run
//! in order as they are planned until the first that writes files (`COPY ...
//! TO`, `INSERT INTO`, `EXECUTE`, `EXPLAIN ANALYZE`); from there on the
//! following statements are planned before those writes run, up to the next
//! statement that changes the catalog or the settings (`CREATE`, `DROP`,
//! `SET`): the writes planned so far run first, then it, so every statement
//! still runs in the order given and sees what the earlier ones did. A local
//! `COPY ... TO` target is written under a temporary name beside it and moved
//! into place only when the statement succeeded.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::SessionContext;
use std::path::PathBuf;

use crate::output_file::StagedOutput;
use crate::{JobError, Result};

/// Runs each statement (see the module docs for the order) and returns the
/// results in the statements' order.
pub async fn execute(ctx: &SessionContext, queries: &[String]) -> Result<Vec<Vec<RecordBatch>>> {
    execute_with_params(ctx, queries, None).await
}

/// [`execute`] with values for the statements' `$1`, `$2`, ... parameters.
pub async fn execute_with_params(
    ctx: &SessionContext,
    queries: &[String],
    params: Option<ParamValues>,
) -> Result<Vec<Vec<RecordBatch>>> {
    let statements = parse(ctx, queries)?;
    let mut results = vec![Vec::new(); statements.len()];
    let mut deferred = Vec::new();
    for (index, statement) in statements.into_iter().enumerate() {
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(|source| statement_error(index, queries.len(), source))?;
        let plan = match &params {
            Some(values) => plan.with_param_values(values.clone())?,
            None => plan,
        };
        if changes_the_catalog(&plan) {
            // In order: the writes planned before it run first.
            run_all(ctx, std::mem::take(&mut deferred), &mut results).await?;
            results[index] = run(ctx, plan).await?;
        } else if deferred.is_empty() && !writes_files(&plan) {
            results[index] = run(ctx, plan).await?;
        } else {
            deferred.push((index, plan));
        }
    }
    run_all(ctx, deferred, &mut results).await?;
    Ok(results)
}

async fn run_all(
    ctx: &SessionContext,
    plans: Vec<(usize, LogicalPlan)>,
    results: &mut [Vec<RecordBatch>],
) -> Result<()> {
    for (index, plan) in plans {
        results[index] = run(ctx, plan).await?;
    }
    Ok(())
}

fn parse(
    ctx: &SessionContext,
    queries: &[String],
) -> Result<Vec<datafusion::sql::parser::Statement>> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    queries
        .iter()
        .enumerate()
        .map(|(index, query)| {
            state
                .sql_to_statement(query, &dialect)
                .map_err(|source| statement_error(index, queries.len(), source))
        })
        .collect()
}

/// An error of statement `index`, numbered from 1 when there are several.
fn statement_error(
    index: usize,
    count: usize,
    source: datafusion::error::DataFusionError,
) -> JobError {
    if count == 1 {
        return source.into();
    }
    JobError::Statement {
        number: index + 1,
        source,
    }
}

fn writes_files(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Copy(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Statement(Statement::Execute(_))
    )
}

/// Statements that change the catalog or the settings later statements see.
fn changes_the_catalog(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Ddl(_) => true,
        LogicalPlan::Statement(statement) => !matches!(statement, Statement::Execute(_)),
        _ => false,
    }
}

async fn run(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    match plan {
        LogicalPlan::Copy(copy) if !crossflow_cluster::is_remote(ctx) => {
            match local_path(&copy.output_url) {
                Some(target) => copy_atomically(ctx, copy, target).await,
                None => collect(ctx, LogicalPlan::Copy(copy)).await,
            }
        }
        plan => collect(ctx, plan).await,
    }
}

async fn collect(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
}

/// Writes a COPY's output under a temporary name beside `target` and moves it
/// into place on success; a failure removes it.
async fn copy_atomically(
    ctx: &SessionContext,
    copy: CopyTo,
    target: PathBuf,
) -> Result<Vec<RecordBatch>> {
    let staged = StagedOutput::create(&target)?;
    let mut url = staged.staged().display().to_string();
    if copy.output_url.ends_with('/') {
        url.push('/');
    }
    let plan = LogicalPlan::Copy(CopyTo {
        output_url: url,
        ..copy
    });
    let batches = collect(ctx, plan).await?;
    staged.commit()?;
    Ok(batches)
}

/// The local path of a COPY target: a plain path or a `file://` URL.
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!url.contains("://")).then(|| PathBuf::from(url))
}
