//! `crossflow models pull` and `crossflow models list`: Hub models fetched
//! ahead of time into the Hugging Face cache, for machines that run offline.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use crossflow_hub::{HubCache, ModelSpec};

use super::ModelArgs;
use crate::{JobError, Result};

/// `crossflow models ...`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// The `models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Fetch Hub models (ORG/NAME[@REVISION]) into the Hugging Face cache:
    /// the files `--model ORG/NAME` loads, with --onnx-file's graph
    Pull {
        /// Hub repo ids, each ORG/NAME or ORG/NAME@REVISION
        #[arg(required = true, value_name = "ORG/NAME[@REVISION]")]
        models: Vec<PathBuf>,
    },
    /// List the models in the Hugging Face cache: repo, commit, branches or
    /// tags, files and size
    List,
}

impl ModelsArgs {
    /// Runs the subcommand with the Hub settings of `models`, writing its
    /// report to `out`.
    pub fn run(&self, models: &ModelArgs, out: &mut dyn Write) -> Result<()> {
        match &self.action {
            ModelsAction::Pull { models: ids } => {
                ids.iter().try_for_each(|id| pull(id, models, out))
            }
            ModelsAction::List => list(models, out),
        }
    }
}

fn pull(id: &Path, models: &ModelArgs, out: &mut dyn Write) -> Result<()> {
    if let ModelSpec::Local(dir) = ModelSpec::parse(id)? {
        return Err(JobError::Usage(format!(
            "models pull {}: a local directory, not a Hub repo id (ORG/NAME[@REVISION])",
            dir.display()
        )));
    }
    let resolved = crossflow_hub::resolve(id, models.onnx_file.as_deref(), &models.hub_settings())?;
    let origin = resolved.origin.expect("a Hub model has an origin");
    let graph = resolved.onnx_file.unwrap_or_default();
    writeln!(
        out,
        "{} {} {} {}",
        origin.repo,
        origin.commit,
        graph.display(),
        resolved.dir.display()
    )
    .map_err(write_error)
}

fn list(models: &ModelArgs, out: &mut dyn Write) -> Result<()> {
    let settings = models.hub_settings();
    let cached = HubCache::new(&settings.cache_dir).list()?;
    if cached.is_empty() {
        eprintln!(
            "no models in the Hugging Face cache {}",
            settings.cache_dir.display()
        );
        return Ok(());
    }
    let width = cached.iter().map(|m| m.id.len()).max().unwrap_or(0).max(4);
    let mut text = format!(
        "{:width$}  {:40}  {:12}  {:>10}  graphs\n",
        "repo", "commit", "refs", "MB"
    );
    for model in &cached {
        let graphs: Vec<&str> = model
            .files
            .iter()
            .filter(|f| f.ends_with(".onnx"))
            .map(String::as_str)
            .collect();
        let refs = if model.refs.is_empty() {
            "-".to_string()
        } else {
            model.refs.join(",")
        };
        text.push_str(&format!(
            "{:width$}  {}  {:12}  {:>10.1}  {}\n",
            model.id,
            model.commit,
            refs,
            model.bytes as f64 / 1e6,
            if graphs.is_empty() {
                "-".to_string()
            } else {
                graphs.join(",")
            }
        ));
    }
    out.write_all(text.as_bytes()).map_err(write_error)
}

fn write_error(source: std::io::Error) -> JobError {
    JobError::Io {
        path: "standard output".into(),
        source,
    }
}
