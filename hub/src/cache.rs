//! The Hugging Face cache as `huggingface_hub` lays it out, read and written
//! so that both share it: `models--ORG--NAME/refs/REVISION` holds a commit,
//! `snapshots/COMMIT/FILE` links to `blobs/ETAG`.

use std::path::{Path, PathBuf};

use crate::spec::{RepoRef, is_commit_hash};
use crate::{HubError, Result};

/// One cache directory.
#[derive(Debug, Clone)]
pub struct HubCache {
    dir: PathBuf,
}

/// A revision of a repo held in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// `ORG/NAME`.
    pub id: String,
    /// The commit.
    pub commit: String,
    /// Branches and tags that point at it.
    pub refs: Vec<String>,
    /// Its files, relative to the snapshot.
    pub files: Vec<String>,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl HubCache {
    /// The cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit a revision stands for here: a commit hash stands for itself
    /// when its snapshot exists, a branch or tag for what its ref file holds.
    pub fn commit_of(&self, repo: &RepoRef) -> Option<String> {
        if repo.is_commit() {
            return self
                .snapshot(&repo.id, &repo.revision)
                .is_dir()
                .then(|| repo.revision.clone());
        }
        let text =
            std::fs::read_to_string(self.repo_dir(&repo.id).join("refs").join(&repo.revision))
                .ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// The snapshot directory of `commit`.
    pub fn snapshot(&self, id: &str, commit: &str) -> PathBuf {
        self.repo_dir(id).join("snapshots").join(commit)
    }

    /// The files of a snapshot (links whose blob is there), sorted.
    pub fn files(&self, id: &str, commit: &str) -> Vec<String> {
        files_in(&self.snapshot(id, commit))
    }

    /// Points `revision` at `commit`, as `huggingface_hub` does, replacing
    /// the ref file in one rename.
    pub fn write_ref(&self, id: &str, revision: &str, commit: &str) -> Result<()> {
        replace(&self.repo_dir(id).join("refs").join(revision), commit)
    }

    /// The repo's file list at `commit`, as a download recorded it: with
    /// it, the cache alone chooses a graph and finds missing files as the
    /// Hub would. `None` for a revision another tool cached.
    pub fn listing(&self, id: &str, commit: &str) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.listing_path(id, commit)).ok()?;
        Some(text.lines().map(str::to_string).collect())
    }

    /// Records the repo's file list at `commit` (see [`HubCache::listing`]).
    pub fn write_listing(&self, id: &str, commit: &str, files: &[String]) -> Result<()> {
        replace(&self.listing_path(id, commit), &files.join("\n"))
    }

    /// Waits until no other process or thread fetches into `id`'s cache,
    /// and holds that until the guard is dropped.
    pub fn lock(&self, id: &str) -> Result<std::fs::File> {
        let path = self.repo_dir(id).join(".crossflow").join("lock");
        let io = |source| HubError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("in the repo's directory")).map_err(io)?;
        let file = std::fs::File::create(&path).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    /// The blob a Hub ETag names.
    pub fn blob(&self, id: &str, etag: &str) -> PathBuf {
        self.repo_dir(id).join("blobs").join(etag)
    }

    /// Links `file` of `commit`'s snapshot to `blob`, as `huggingface_hub`
    /// does (a relative link), replacing a dangling one.
    pub fn link(&self, id: &str, commit: &str, file: &str, blob: &Path) -> Result<()> {
        let link = self.snapshot(id, commit).join(file);
        let io = |source| HubError::Cache {
            path: link.clone(),
            source,
        };
        remove_dangling(&link)?;
        std::fs::create_dir_all(link.parent().expect("in a snapshot")).map_err(io)?;
        let depth = file.split('/').count() + 1;
        let target = PathBuf::from("../".repeat(depth))
            .join("blobs")
            .join(blob.file_name().expect("a blob file"));
        std::os::unix::fs::symlink(target, &link).map_err(io)
    }

    fn listing_path(&self, id: &str, commit: &str) -> PathBuf {
        self.repo_dir(id)
            .join(".crossflow")
            .join(format!("files-{commit}"))
    }

    /// Every cached model revision, by repo id then commit.
    pub fn list(&self) -> Result<Vec<CachedModel>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(HubError::Cache {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut models = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("models--")
                .map(|n| n.replacen("--", "/", 1))
            {
                models.extend(self.revisions(&id));
            }
        }
        models.sort_by(|a, b| (&a.id, &a.commit).cmp(&(&b.id, &b.commit)));
        Ok(models)
    }

    fn revisions(&self, id: &str) -> Vec<CachedModel> {
        let refs = self.refs(id);
        let Ok(snapshots) = std::fs::read_dir(self.repo_dir(id).join("snapshots")) else {
            return Vec::new();
        };
        snapshots
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|commit| is_commit_hash(commit))
            .map(|commit| {
                let files = self.files(id, &commit);
                let root = self.snapshot(id, &commit);
                let bytes = files
                    .iter()
                    .filter_map(|f| root.join(f).metadata().ok())
                    .map(|m| m.len())
                    .sum();
                let refs = refs
                    .iter()
                    .filter(|(_, c)| *c == commit)
                    .map(|(r, _)| r.clone())
                    .collect();
                CachedModel {
                    id: id.to_string(),
                    commit,
                    refs,
                    files,
                    bytes,
                }
            })
            .collect()
    }

    /// `(revision, commit)` of each ref, leaving out refs named by their own commit.
    fn refs(&self, id: &str) -> Vec<(String, String)> {
        let root = self.repo_dir(id).join("refs");
        let mut names = Vec::new();
        walk(&root, &root, &mut names);
        let mut refs: Vec<(String, String)> = names
            .into_iter()
            .filter(|name| {
                !is_commit_hash(name) && !name.rsplit('/').next().unwrap_or("").starts_with('.')
            })
            .filter_map(|name| {
                let commit = std::fs::read_to_string(root.join(&name)).ok()?;
                Some((name, commit.trim().to_string()))
            })
            .collect();
        refs.sort();
        refs
    }

    fn repo_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!("models--{}", id.replace('/', "--")))
    }
}

/// Removes a link whose target is gone (a blob removed as corrupt), so that
/// the file can be linked again.
pub(crate) fn remove_dangling(link: &Path) -> Result<()> {
    let dangling = link.symlink_metadata().is_ok() && !link.exists();
    if dangling {
        std::fs::remove_file(link).map_err(|source| HubError::Cache {
            path: link.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file renamed over it: a reader
/// sees the old text or the new one.
fn replace(path: &Path, text: &str) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let io = |source| HubError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let parent = path.parent().expect("a file in the cache has a parent");
    std::fs::create_dir_all(parent).map_err(io)?;
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = parent.join(format!(".{}-{unique}.tmp", std::process::id()));
    std::fs::write(&temp, text).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

/// The files under `dir`, following links, as sorted `/`-separated paths.
pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// Collects the files under `dir` (following links, skipping broken ones)
/// as `/`-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let (true, Ok(relative)) = (path.is_file(), path.strip_prefix(root)) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn cache_with_snapshot() -> (tempfile::TempDir, HubCache) {
        let root = tempfile::tempdir().unwrap();
        let cache = HubCache::new(root.path());
        let snapshot = cache.snapshot("org/name", COMMIT);
        std::fs::create_dir_all(snapshot.join("onnx")).unwrap();
        let blobs = root.path().join("models--org--name/blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("e1"), b"{}").unwrap();
        std::os::unix::fs::symlink("../../blobs/e1", snapshot.join("config.json")).unwrap();
        std::fs::write(snapshot.join("onnx/model.onnx"), b"graph").unwrap();
        std::os::unix::fs::symlink("../../blobs/gone", snapshot.join("tokenizer.json")).unwrap();
        (root, cache)
    }

    fn repo(revision: &str) -> RepoRef {
        RepoRef {
            id: "org/name".into(),
            revision: revision.into(),
        }
    }

    #[test]
    fn revisions_resolve_through_refs_and_commits_stand_for_themselves() {
        let (_root, cache) = cache_with_snapshot();
        assert_eq!(cache.commit_of(&repo("main")), None);
        assert_eq!(cache.commit_of(&repo(COMMIT)).as_deref(), Some(COMMIT));
        cache.write_ref("org/name", "main", COMMIT).unwrap();
        assert_eq!(cache.commit_of(&repo("main")).as_deref(), Some(COMMIT));
        let other = "1123456789abcdef0123456789abcdef01234567";
        assert_eq!(cache.commit_of(&repo(other)), None);
    }

    #[test]
    fn listing_shows_files_whose_blobs_exist_and_named_refs() {
        let (_root, cache) = cache_with_snapshot();
        cache.write_ref("org/name", "main", COMMIT).unwrap();
        cache.write_ref("org/name", COMMIT, COMMIT).unwrap();
        let listed = cache.list().unwrap();
        assert_eq!(
            listed,
            vec![CachedModel {
                id: "org/name".into(),
                commit: COMMIT.into(),
                refs: vec!["main".into()],
                files: vec!["config.json".into(), "onnx/model.onnx".into()],
                bytes: 7,
            }]
        );
        assert!(HubCache::new("/no/such/cache").list().unwrap().is_empty());
    }
}
