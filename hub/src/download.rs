//! Fetching a model's files from the Hub into the cache with `hf-hub`: one
//! request for the revision's commit and file list, then each missing file
//! of that commit, downloaded to a `.part` file, renamed when complete and
//! checked against its hash.

use std::io::IsTerminal;
use std::path::Path;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::cache::{self, HubCache};
use crate::graph::{self, GraphChoice, REQUIRED_FILES};
use crate::spec::{RepoRef, is_commit_hash};
use crate::{HubError, HubSettings, Result, verify};

/// Retries of an interrupted download, each resuming where it stopped.
const RETRIES: usize = 2;

/// The revision's commit, the chosen graph and the files of both, now in the cache.
pub(crate) struct Fetched {
    pub commit: String,
    pub graph: String,
}

/// Resolves `repo` on the Hub and downloads what the cache lacks.
pub(crate) fn fetch(
    repo: &RepoRef,
    choice: &GraphChoice,
    settings: &HubSettings,
    cache: &HubCache,
) -> Result<Fetched> {
    let api = api(settings)?;
    let at = |revision: &str| {
        api.repo(Repo::with_revision(
            repo.id.clone(),
            RepoType::Model,
            revision.to_string(),
        ))
    };
    let info = at(&repo.revision)
        .info()
        .map_err(|e| classify(e, repo, settings, None))?;
    if !is_commit_hash(&info.sha) {
        return Err(download_error(
            repo,
            "the file list",
            format!("the Hub answered an invalid commit {:?}", info.sha),
        ));
    }
    let commit = info.sha;
    let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let graph = crate::chosen(
        graph::choose(&files, choice, true, &crate::host_int8_order()),
        &repo.id,
        &commit,
        None,
    )?;
    let pinned = at(&commit);
    let _fetching = cache.lock(&repo.id)?;
    for file in graph::needed_files(&graph, &files) {
        if REQUIRED_FILES.contains(&file.as_str()) && !files.contains(&file) {
            return Err(HubError::FileNotInRepo {
                repo: repo.id.clone(),
                revision: commit,
                file,
            });
        }
        if cache.snapshot(&repo.id, &commit).join(&file).is_file() {
            continue;
        }
        let fail = |e| classify(e, repo, settings, Some(&file));
        let etag = api
            .metadata(&pinned.url(&file))
            .map_err(fail)?
            .etag()
            .to_string();
        if !link_cached_blob(cache, repo, &commit, &file, &etag)? {
            tracing::info!(repo = %repo.id, %commit, %file, "downloading");
            cache::remove_dangling(&cache.snapshot(&repo.id, &commit).join(&file))?;
            let path = pinned.download(&file).map_err(fail)?;
            check(&path, repo, &file)?;
        }
    }
    cache.write_listing(&repo.id, &commit, &files)?;
    forget_commit_ref(cache, &repo.id, &commit);
    if !repo.is_commit() {
        cache.write_ref(&repo.id, &repo.revision, &commit)?;
    }
    Ok(Fetched { commit, graph })
}

fn api(settings: &HubSettings) -> Result<Api> {
    ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(std::io::stderr().is_terminal())
        .with_retries(RETRIES)
        .with_user_agent("crossflow", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| HubError::Download {
            repo: String::new(),
            file: String::new(),
            reason: e.to_string(),
        })
}

/// Links `file` to the blob its ETag names when an earlier download (of
/// another commit, or by another tool) left it and it checks out: a new
/// commit that changed other files downloads only those.
fn link_cached_blob(
    cache: &HubCache,
    repo: &RepoRef,
    commit: &str,
    file: &str,
    etag: &str,
) -> Result<bool> {
    let blob = cache.blob(&repo.id, etag);
    let unusable = |source| HubError::Cache {
        path: blob.clone(),
        source,
    };
    if etag.contains('/')
        || !blob.is_file()
        || verify::mismatch(&blob, etag).map_err(unusable)?.is_some()
    {
        return Ok(false);
    }
    cache.link(&repo.id, commit, file, &blob)?;
    tracing::info!(repo = %repo.id, %commit, %file, "linked to the cached copy");
    Ok(true)
}

/// Removes a downloaded file whose contents do not match its ETag, and its
/// snapshot link, so that no later run uses it.
fn check(path: &Path, repo: &RepoRef, file: &str) -> Result<()> {
    let cache_error = |source| HubError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let blob = path
        .parent()
        .expect("a snapshot file has a parent")
        .join(std::fs::read_link(path).map_err(cache_error)?);
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((expected, actual)) = verify::mismatch(&blob, &etag).map_err(cache_error)? else {
        return Ok(());
    };
    std::fs::remove_file(path).map_err(cache_error)?;
    std::fs::remove_file(&blob).map_err(cache_error)?;
    Err(HubError::Corrupt {
        repo: repo.id.clone(),
        file: file.to_string(),
        expected,
        actual,
    })
}

/// `hf-hub` records a download at a commit as a ref named by that commit;
/// `huggingface_hub` writes no such ref, so it is removed.
fn forget_commit_ref(cache: &HubCache, id: &str, commit: &str) {
    let path = cache
        .dir()
        .join(format!("models--{}", id.replace('/', "--")))
        .join("refs")
        .join(commit);
    if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == commit) {
        let _ = std::fs::remove_file(path);
    }
}

fn classify(
    error: ApiError,
    repo: &RepoRef,
    settings: &HubSettings,
    file: Option<&str>,
) -> HubError {
    match error {
        ApiError::RequestError(error) => match *error {
            ureq::Error::StatusCode(404) => match file {
                None => HubError::RepoNotFound {
                    repo: repo.id.clone(),
                    revision: repo.revision.clone(),
                    endpoint: settings.endpoint.clone(),
                },
                Some(file) => HubError::FileNotInRepo {
                    repo: repo.id.clone(),
                    revision: repo.revision.clone(),
                    file: file.to_string(),
                },
            },
            ureq::Error::StatusCode(status @ (401 | 403)) => HubError::AccessRefused {
                repo: repo.id.clone(),
                status,
                hint: match (settings.token.is_some(), file) {
                    (true, _) => {
                        "the token given has no access to it: accept the repo's terms on the \
                         Hub, or use a token with read access"
                    }
                    // Without a token the Hub answers 401 for a repo that does not exist too.
                    (false, None) => {
                        "check the id (no directory of that name here either); if it is gated \
                         or private, accept its terms on the Hub and give a token (--hf-token, \
                         HF_TOKEN or `huggingface-cli login`)"
                    }
                    (false, Some(_)) => {
                        "it is gated or private: accept its terms on the Hub and give a token \
                         (--hf-token, HF_TOKEN or `huggingface-cli login`)"
                    }
                },
            },
            error @ (ureq::Error::Io(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)) => HubError::Unreachable {
                endpoint: settings.endpoint.clone(),
                repo: repo.id.clone(),
                source: Box::new(error),
            },
            error => download_error(repo, file.unwrap_or("the file list"), error.to_string()),
        },
        ApiError::TooManyRetries(error) => classify(*error, repo, settings, file),
        error => download_error(repo, file.unwrap_or("the file list"), error.to_string()),
    }
}

fn download_error(repo: &RepoRef, file: &str, reason: String) -> HubError {
    HubError::Download {
        repo: repo.id.clone(),
        file: file.to_string(),
        reason,
    }
}
