//! What can go wrong when a model is named by Hub id, each error naming
//! what a user can act on: the repo, the revision, the file, the endpoint.

use std::path::PathBuf;

/// The export commands a repo without an ONNX graph can be given one with.
pub const EXPORT_HINT: &str = "export one with `optimum-cli export onnx --model REPO \
    --task text-classification DIR` (Hugging Face Optimum) or sentence-transformers' \
    `CrossEncoder(REPO, backend=\"onnx\").save_pretrained(DIR)`, then pass DIR as --model";

/// A Hub model that could not be resolved to local files.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The text is neither an existing directory nor a Hub repo id.
    #[error(
        "model {spec:?}: no such directory, and not a Hugging Face Hub repo id \
         (ORG/NAME or ORG/NAME@REVISION)"
    )]
    NotAModel {
        /// The model as given.
        spec: String,
    },
    /// The Hub answered 404 for the repo or revision.
    #[error(
        "Hugging Face Hub repo {repo} at revision {revision} not found on {endpoint}, \
         and no directory {repo} here (check the id and the revision)"
    )]
    RepoNotFound {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The Hub's address.
        endpoint: String,
    },
    /// The Hub refused access (gated or private repo).
    #[error("Hugging Face Hub repo {repo}: access refused (HTTP {status}); {hint}")]
    AccessRefused {
        /// The repo id.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// What to do about it.
        hint: &'static str,
    },
    /// The repo has no ONNX graph crossflow could load.
    #[error("Hugging Face Hub repo {repo} at {revision} has no ONNX export; {}", EXPORT_HINT.replace("REPO", repo))]
    NoOnnxExport {
        /// The repo id.
        repo: String,
        /// The commit looked at.
        revision: String,
    },
    /// Several graphs and no rule to choose.
    #[error(
        "model {repo}: no onnx/model.onnx or model.onnx, and several ONNX graphs ({candidates}); \
         choose one with --onnx-file"
    )]
    AmbiguousOnnx {
        /// The repo id or directory.
        repo: String,
        /// The graphs found.
        candidates: String,
    },
    /// `--onnx-file auto-int8` found no int8 graph this CPU can run.
    #[error(
        "model {repo}: --onnx-file auto-int8 found no int8 graph for this CPU ({cpu}); \
         int8 graphs published: {published}"
    )]
    NoInt8Variant {
        /// The repo id or directory.
        repo: String,
        /// The CPU features consulted.
        cpu: String,
        /// The int8 graphs present, or "none".
        published: String,
    },
    /// `--onnx-file` names a file the repo does not have.
    #[error("Hugging Face Hub repo {repo} at {revision} has no file {file}")]
    FileNotInRepo {
        /// The repo id.
        repo: String,
        /// The commit looked at.
        revision: String,
        /// The missing file.
        file: String,
    },
    /// Offline, and the cache lacks something the model needs.
    #[error(
        "offline (HF_HUB_OFFLINE / --offline): {repo} at revision {revision} is not in the \
         Hugging Face cache {cache}: missing {file}; run `crossflow models pull {repo}@{revision}` \
         on a machine with network access, with the same cache"
    )]
    NotCached {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// What is missing: a file, or the revision's ref.
        file: String,
        /// The cache directory.
        cache: PathBuf,
    },
    /// The Hub could not be reached.
    #[error(
        "cannot reach the Hugging Face Hub at {endpoint} for {repo}: {source}; \
         set HF_ENDPOINT for a mirror, or HF_HUB_OFFLINE=1 to use the cache only"
    )]
    Unreachable {
        /// The Hub's address.
        endpoint: String,
        /// The repo id.
        repo: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A file could not be downloaded completely.
    #[error(
        "download of {file} from {repo} failed: {reason}; nothing partial is used, \
         run again to resume"
    )]
    Download {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A downloaded file does not match the hash the Hub announced.
    #[error(
        "download of {file} from {repo} is corrupt: expected {expected}, got {actual}; \
         it was removed from the cache, run again to download it"
    )]
    Corrupt {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// The announced hash.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// The cache could not be read or written.
    #[error("Hugging Face cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, HubError>;

impl HubError {
    /// Whether the model as named cannot work (a wrong id, revision, file or
    /// token, or a cache that lacks it offline), as opposed to a failure a
    /// later run may not meet (network, disk).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            Self::Unreachable { .. }
                | Self::Download { .. }
                | Self::Corrupt { .. }
                | Self::Cache { .. }
        )
    }
}
