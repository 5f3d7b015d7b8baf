//! Models named by Hugging Face Hub repo id (`ORG/NAME`, `ORG/NAME@REVISION`),
//! resolved into the standard Hugging Face cache so that crossflow, the
//! `huggingface_hub` Python library and other tools share one copy.
//!
//! An existing local directory is used as it is. A repo id is resolved to
//! a commit (logged, and part of the model's fingerprint through
//! [`crossflow::ModelOrigin`]), and only the files the model needs are
//! fetched: its configurations, `tokenizer.json` and one ONNX graph with
//! its external data, if any. A revision that is a commit hash and is in the
//! cache needs no network call; offline ([`HubSettings::offline`]) only the
//! cache is read.
//!
//! ```no_run
//! use std::path::Path;
//! use crossflow_hub::{HubSettings, resolve};
//!
//! let model = resolve(
//!     Path::new("cross-encoder/ms-marco-MiniLM-L6-v2"),
//!     None,
//!     &HubSettings::from_env(),
//! )?;
//! println!("{} ({:?})", model.dir.display(), model.origin);
//! # Ok::<(), crossflow_hub::HubError>(())
//! ```

mod cache;
mod download;
mod error;
mod graph;
mod settings;
mod spec;
mod verify;

use std::path::{Path, PathBuf};

pub use cache::{CachedModel, HubCache};
use crossflow::{CpuInfo, EngineOptions, ModelOrigin};
pub use error::{EXPORT_HINT, HubError, Result};
pub use graph::{AUTO_INT8, GraphChoice};
use graph::{Unchosen, choose, int8_order, needed_files};
pub use settings::{DEFAULT_ENDPOINT, HubSettings, is_true};
pub use spec::{DEFAULT_REVISION, ModelSpec, RepoRef};

/// A model ready to load: its directory, the graph chosen in it, and where
/// it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The directory to load: the local one, or the cache's snapshot.
    pub dir: PathBuf,
    /// The graph relative to `dir`, when chosen here; `None` leaves the
    /// choice to the engine's rules for a local directory.
    pub onnx_file: Option<PathBuf>,
    /// The repo and commit of a Hub model.
    pub origin: Option<ModelOrigin>,
}

/// Resolves `model` (a directory or a repo id) with the `--onnx-file`
/// value `onnx_file` (a path in the model, or [`AUTO_INT8`]).
pub fn resolve(
    model: &Path,
    onnx_file: Option<&Path>,
    settings: &HubSettings,
) -> Result<ResolvedModel> {
    let choice = GraphChoice::from_flag(onnx_file);
    match ModelSpec::parse(model)? {
        ModelSpec::Local(dir) => local(dir, onnx_file, &choice),
        ModelSpec::Hub(repo) => hub(&repo, &choice, settings),
    }
}

/// [`resolve`] for the engine: the directory to load, and `options` (whose
/// `onnx_file` is the `--onnx-file` value) with the chosen graph and the
/// model's origin.
pub fn locate(
    model: &Path,
    options: EngineOptions,
    settings: &HubSettings,
) -> Result<(PathBuf, EngineOptions)> {
    let resolved = resolve(model, options.onnx_file.as_deref(), settings)?;
    let options = EngineOptions {
        onnx_file: resolved.onnx_file,
        origin: resolved.origin,
        ..options
    };
    Ok((resolved.dir, options))
}

/// A local directory; with `auto-int8`, the graph for this CPU among its own.
fn local(dir: PathBuf, onnx_file: Option<&Path>, choice: &GraphChoice) -> Result<ResolvedModel> {
    let onnx_file = match choice {
        GraphChoice::AutoInt8 => {
            let files = cache::files_in(&dir);
            let name = dir.display().to_string();
            let graph = chosen(
                choose(&files, choice, true, &host_int8_order()),
                &name,
                "",
                None,
            )?;
            tracing::info!(model = %name, graph = %graph, cpu = %CpuInfo::host(), "auto-int8 chose the graph for this CPU");
            Some(PathBuf::from(graph))
        }
        _ => onnx_file.map(Path::to_path_buf),
    };
    Ok(ResolvedModel {
        dir,
        onnx_file,
        origin: None,
    })
}

/// A Hub repo: from the cache when offline or when a cached commit is
/// asked for, otherwise resolved and completed on the Hub.
fn hub(repo: &RepoRef, choice: &GraphChoice, settings: &HubSettings) -> Result<ResolvedModel> {
    let cache = HubCache::new(&settings.cache_dir);
    let cached = (settings.offline || repo.is_commit()).then(|| from_cache(repo, choice, &cache));
    let (commit, graph) = match cached {
        Some(Ok(found)) => found,
        Some(Err(error)) if settings.offline => return Err(error),
        _ => {
            let fetched = download::fetch(repo, choice, settings, &cache)?;
            (fetched.commit, fetched.graph)
        }
    };
    tracing::info!(repo = %repo.id, revision = %repo.revision, %commit, %graph, "Hub model resolved");
    if *choice == GraphChoice::AutoInt8 {
        tracing::info!(repo = %repo.id, %graph, cpu = %CpuInfo::host(), "auto-int8 chose the graph for this CPU");
    }
    Ok(ResolvedModel {
        dir: cache.snapshot(&repo.id, &commit),
        onnx_file: Some(PathBuf::from(graph)),
        origin: Some(ModelOrigin {
            repo: repo.id.clone(),
            commit,
        }),
    })
}

/// The commit and graph of `repo` when the cache holds every file they need.
fn from_cache(repo: &RepoRef, choice: &GraphChoice, cache: &HubCache) -> Result<(String, String)> {
    let missing = |file: String| HubError::NotCached {
        repo: repo.id.clone(),
        revision: repo.revision.clone(),
        file,
        cache: cache.dir().to_path_buf(),
    };
    let commit = cache
        .commit_of(repo)
        .ok_or_else(|| missing(format!("the revision itself ({})", repo.revision)))?;
    let cached = cache.files(&repo.id, &commit);
    // The repo's listing, recorded when crossflow fetched it, chooses as the
    // Hub would; without it, only what is cached can be chosen from.
    let (listing, complete) = match cache.listing(&repo.id, &commit) {
        Some(listing) => (listing, true),
        None => (cached.clone(), false),
    };
    let graph = chosen(
        choose(&listing, choice, complete, &host_int8_order()),
        &repo.id,
        &commit,
        Some(&missing),
    )?;
    match needed_files(&graph, &listing)
        .into_iter()
        .find(|f| !cached.contains(f))
    {
        Some(file) => Err(missing(file)),
        None => Ok((commit, graph)),
    }
}

/// The error for a graph that could not be chosen; `missing` makes the
/// error for a file a cache lacks.
fn chosen(
    result: std::result::Result<String, Unchosen>,
    repo: &str,
    revision: &str,
    missing: Option<&dyn Fn(String) -> HubError>,
) -> Result<String> {
    result.map_err(|unchosen| match (unchosen, missing) {
        (Unchosen::Missing(file), Some(missing)) => missing(file),
        (Unchosen::NoGraph | Unchosen::Ambiguous(_), Some(missing)) => {
            missing(graph::DEFAULT_GRAPHS[1].to_string())
        }
        (Unchosen::Missing(file), None) => HubError::FileNotInRepo {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file,
        },
        (Unchosen::NoGraph, None) => HubError::NoOnnxExport {
            repo: repo.to_string(),
            revision: revision.to_string(),
        },
        (Unchosen::Ambiguous(candidates), None) => HubError::AmbiguousOnnx {
            repo: repo.to_string(),
            candidates: candidates.join(", "),
        },
        (Unchosen::NoInt8(_), Some(missing)) => missing(format!(
            "an int8 graph this CPU runs ({})",
            host_int8_order().join(", ")
        )),
        (Unchosen::NoInt8(published), None) => HubError::NoInt8Variant {
            repo: repo.to_string(),
            cpu: CpuInfo::host().features.join(" "),
            published: if published.is_empty() {
                "none".to_string()
            } else {
                published.join(", ")
            },
        },
    })
}

/// The int8 instruction sets of this CPU, best first.
fn host_int8_order() -> Vec<&'static str> {
    int8_order(&CpuInfo::host().features, std::env::consts::ARCH)
}
