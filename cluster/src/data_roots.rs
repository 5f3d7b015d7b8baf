//! Where a cluster may read and write: with `--data-root DIR` (repeatable),
//! a plan that scans or writes a file outside those directories is refused,
//! at the scheduler (the logical plan a client submits) and again at each
//! executor (the physical plan of every task, which is what touches files).
//! Paths are compared after resolving `.`, `..` and links; a target that does
//! not exist yet is resolved through its nearest existing directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSink};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::ClusterError;

/// The directories a cluster's plans may read and write under.
#[derive(Debug, Clone)]
pub struct DataRoots(Arc<[PathBuf]>);

impl DataRoots {
    /// The roots, resolved; each must be an existing directory.
    pub fn new(dirs: &[PathBuf]) -> crate::Result<Self> {
        let resolved = dirs
            .iter()
            .map(|dir| match dir.canonicalize() {
                Ok(path) if path.is_dir() => Ok(path),
                Ok(_) => Err(format!("{}: not a directory", dir.display())),
                Err(e) => Err(format!("{}: {e}", dir.display())),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(ClusterError::DataRoot)?;
        Ok(Self(resolved.into()))
    }

    /// Refuses reading `path` outside every root (for functions that read
    /// a file named in their arguments).
    pub fn check_read(&self, path: &Path) -> Result<()> {
        self.check_path("reading", path)
    }

    /// Refuses `path` (read or written, as `what` says) outside every root.
    fn check_path(&self, what: &str, path: &Path) -> Result<()> {
        let resolved = resolve(path);
        if self.0.iter().any(|root| resolved.starts_with(root)) {
            return Ok(());
        }
        Err(DataFusionError::Plan(format!(
            "crossflow cluster: {what} {} is outside the cluster's data roots ({}); \
             see --data-root",
            path.display(),
            self.0
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn check_url(&self, what: &str, url: &ListingTableUrl) -> Result<()> {
        match url.get_url().to_file_path() {
            Ok(path) if url.scheme() == "file" => self.check_path(what, &path),
            _ => Err(DataFusionError::Plan(format!(
                "crossflow cluster: {what} {} is not a local path; only files under the \
                 data roots can be used",
                url.as_str()
            ))),
        }
    }

    /// Refuses a physical plan that scans or writes outside the roots (or
    /// writes through a sink whose target cannot be told).
    pub fn check_physical(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<DataSourceExec>()
                && let Some(files) = scan.data_source().downcast_ref::<FileScanConfig>()
            {
                if files.object_store_url.as_str() != "file:///" {
                    return Err(DataFusionError::Plan(format!(
                        "crossflow cluster: reading from {} is not a local path; only \
                         files under the data roots can be used",
                        files.object_store_url.as_str()
                    )));
                }
                for file in files.file_groups.iter().flat_map(|group| group.files()) {
                    let path = Path::new("/").join(file.object_meta.location.as_ref());
                    self.check_path("reading", &path)?;
                }
            }
            if let Some(sink) = node.downcast_ref::<DataSinkExec>() {
                for url in &sink_config(sink.sink())?.table_paths {
                    self.check_url("writing", url)?;
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map(|_| ())
    }

    /// Refuses a logical plan whose tables or COPY / INSERT targets lie
    /// outside the roots.
    pub fn check_logical(&self, plan: &LogicalPlan) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            match node {
                LogicalPlan::TableScan(scan) => {
                    self.check_provider("reading", &source_as_provider(&scan.source)?)?
                }
                LogicalPlan::Copy(copy) => {
                    self.check_url("writing", &ListingTableUrl::parse(&copy.output_url)?)?
                }
                LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
                    self.check_provider("writing", &source_as_provider(&dml.target)?)?
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map(|_| ())
    }

    fn check_provider(
        &self,
        what: &str,
        provider: &Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        if let Some(table) = provider.downcast_ref::<ListingTable>() {
            for url in table.table_paths() {
                self.check_url(what, url)?;
            }
        }
        Ok(())
    }
}

/// The file sink configuration of a Parquet, CSV or JSON sink; any other
/// sink is refused (its target cannot be checked).
fn sink_config(
    sink: &dyn DataSink,
) -> Result<&datafusion::datasource::physical_plan::FileSinkConfig> {
    if let Some(sink) = sink.downcast_ref::<ParquetSink>() {
        return Ok(sink.config());
    }
    if let Some(sink) = sink.downcast_ref::<CsvSink>() {
        return Ok(sink.config());
    }
    if let Some(sink) = sink.downcast_ref::<JsonSink>() {
        return Ok(sink.config());
    }
    Err(DataFusionError::Plan(
        "crossflow cluster: a sink whose target cannot be checked against the data roots"
            .to_string(),
    ))
}

/// `path` with `.` and `..` removed and links resolved through its nearest
/// existing ancestor.
fn resolve(path: &Path) -> PathBuf {
    let mut lexical = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |path, part| path.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// The scheduler's check, as an analyzer rule of its sessions.
#[derive(Debug)]
pub struct DataRootsRule(pub DataRoots);

impl AnalyzerRule for DataRootsRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        self.0.check_logical(&plan)?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "crossflow_data_roots"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_before_they_are_compared() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let roots = DataRoots::new(std::slice::from_ref(&root)).unwrap();
        assert!(
            roots
                .check_path("reading", &root.join("a/new/file.parquet"))
                .is_ok()
        );
        for outside in [
            root.join("../data2/x.parquet"),
            root.join("etc/passwd"),
            PathBuf::from("/etc/passwd"),
        ] {
            let error = roots.check_path("reading", &outside).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("outside the cluster's data roots")
            );
        }
    }
}
