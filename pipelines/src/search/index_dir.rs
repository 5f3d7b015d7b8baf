//! A corpus index on disk, built by `crossflow index` and read by
//! `crossflow search` and the `search` SQL functions: a directory with
//!
//! - `manifest.json`: the bi-encoder's name and fingerprint, the corpus
//!   file's identity (path, size, modification time, SHA-256) and columns,
//!   the vector width and number of lists;
//! - `vectors.arrow`: one row per document with a text, list by list: its
//!   corpus `row` (the document's position in the corpus file), its list
//!   (`probes`) and its unit `vector` (`FixedSizeList<Float32>`);
//! - `centroids.arrow`: the IVF centroids, one `centroid` per list.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dedupe::index::SearchIndex;
use crate::dedupe::index_file;
use crate::output_file::ScratchDir;
use crate::{JobError, Result};

/// Version of the directory's layout.
pub(super) const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const VECTORS: &str = "vectors.arrow";
const CENTROIDS: &str = "centroids.arrow";

/// Which file a corpus is, to tell whether it changed since it was indexed:
/// the same size and SHA-256 is the same corpus (a touched file is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusIdentity {
    /// The file's absolute path when it was indexed.
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, seconds since the Unix epoch (informative).
    pub modified: u64,
    pub sha256: String,
}

impl CorpusIdentity {
    /// The identity of the file at `path` (one Parquet file, not a directory).
    pub fn of(path: &Path) -> Result<Self> {
        let io = |e| JobError::io(path.display(), e);
        let metadata = std::fs::metadata(path).map_err(io)?;
        if !metadata.is_file() {
            return Err(JobError::Usage(format!(
                "{}: a corpus is one Parquet file (not a directory or a glob)",
                path.display()
            )));
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file.read(&mut buffer).map_err(io)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            path: path.canonicalize().map_err(io)?,
            bytes: metadata.len(),
            modified,
            sha256,
        })
    }

    /// Whether `other` has the same contents.
    pub fn same_contents(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.sha256 == other.sha256
    }
}

/// What an index was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub crossflow_version: String,
    pub bi_encoder: String,
    pub bi_encoder_fingerprint: String,
    pub corpus: CorpusIdentity,
    pub doc_id_column: String,
    pub doc_column: String,
    /// Rows of the corpus.
    pub docs: usize,
    /// Rows with a text, the ones indexed.
    pub indexed: usize,
    pub dim: usize,
    pub lists: usize,
}

impl Manifest {
    /// Reads the manifest of the index in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| {
            invalid(
                dir,
                format!("no readable {MANIFEST} ({e}); build one with `crossflow index`"),
            )
        })?;
        let manifest: Self = serde_json::from_str(&text).map_err(|e| {
            invalid(
                dir,
                format!("{MANIFEST} is not a crossflow index manifest: {e}"),
            )
        })?;
        if manifest.format != FORMAT {
            return Err(invalid(
                dir,
                format!(
                    "layout version {} (this crossflow reads {FORMAT}); rebuild it with `crossflow index`",
                    manifest.format
                ),
            ));
        }
        Ok(manifest)
    }
}

fn invalid(dir: &Path, reason: String) -> JobError {
    JobError::InvalidData(format!("--index {}: {reason}", dir.display()))
}

/// A corpus index in memory.
#[derive(Debug)]
pub struct CorpusIndex {
    pub manifest: Manifest,
    pub index: SearchIndex,
    pub centroids: Array2<f32>,
}

impl CorpusIndex {
    /// Writes the index to directory `out` through a temporary directory
    /// beside it, renamed into place when complete. An existing index at
    /// `out` is replaced; anything else there is refused.
    pub fn write(&self, out: &Path) -> Result<()> {
        check_out(out)?;
        let scratch = ScratchDir::beside(out, "crossflow-index")?;
        let dir = scratch.path();
        index_file::write(&self.index, &dir.join(VECTORS))?;
        index_file::write_centroids(&self.centroids, &dir.join(CENTROIDS))?;
        let manifest = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| JobError::Internal(format!("index manifest: {e}")))?;
        std::fs::write(dir.join(MANIFEST), manifest).map_err(|e| JobError::io(out.display(), e))?;
        publish(dir, out)
    }

    /// Reads the index in directory `dir`, checking that its parts agree.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let index = index_file::read(&dir.join(VECTORS))?;
        let centroids = index_file::read_centroids(&dir.join(CENTROIDS))?;
        let agrees = index.dim() == manifest.dim
            && centroids.ncols() == manifest.dim
            && centroids.nrows() == manifest.lists
            && index.lists() == manifest.lists
            && index.source().len() == manifest.indexed
            && index.source().iter().all(|&row| row < manifest.docs);
        if !agrees {
            return Err(invalid(
                dir,
                format!("its files disagree with {MANIFEST}; rebuild it with `crossflow index`"),
            ));
        }
        Ok(Self {
            manifest,
            index,
            centroids,
        })
    }
}

/// `out` may be missing, an empty directory, or an index (replaced): a
/// directory holding only an index's three files, its manifest readable.
pub fn check_out(out: &Path) -> Result<()> {
    let refused = |why: &str| {
        Err(JobError::Usage(format!(
            "--out {}: {why}; choose a new or empty directory",
            out.display()
        )))
    };
    let Ok(entries) = std::fs::read_dir(out) else {
        return match out.exists() {
            true => refused("exists and is not a directory"),
            false => Ok(()),
        };
    };
    let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    let ours = names.iter().all(|n| {
        [MANIFEST, VECTORS, CENTROIDS]
            .iter()
            .any(|f| n.as_os_str() == *f)
    });
    if names.is_empty() || (ours && Manifest::read(out).is_ok()) {
        return Ok(());
    }
    refused("a directory that is not a crossflow index")
}

/// Moves the complete directory `staged` into place at `out`.
fn publish(staged: &Path, out: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| JobError::io(out.display(), e))?;
    crate::output_file::replace_dir(staged, out)
}
