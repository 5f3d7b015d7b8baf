//! How a model is named: a local directory, or a Hub repo id with an
//! optional revision (`ORG/NAME`, `ORG/NAME@REVISION`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{HubError, Result};

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// A model as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// An existing local directory, used as it is.
    Local(PathBuf),
    /// A repo on the Hub.
    Hub(RepoRef),
}

/// A Hub model repo at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// `ORG/NAME`.
    pub id: String,
    /// A branch, tag or commit hash (default `main`).
    pub revision: String,
}

impl RepoRef {
    /// Whether the revision is a full commit hash, which cannot move: a cached
    /// copy of it needs no network call.
    pub fn is_commit(&self) -> bool {
        is_commit_hash(&self.revision)
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.revision)
    }
}

impl ModelSpec {
    /// An existing directory is local; otherwise the text must be a repo id.
    /// A path-like text (absolute, `./`, `~`) that is not a directory is an
    /// error, never a Hub lookup.
    pub fn parse(text: &Path) -> Result<Self> {
        if text.is_dir() {
            return Ok(Self::Local(text.to_path_buf()));
        }
        let not_a_model = || HubError::NotAModel {
            spec: text.display().to_string(),
        };
        let text = text.to_str().ok_or_else(not_a_model)?;
        let (id, revision) = match text.split_once('@') {
            Some((id, revision)) => (id, revision),
            None => (text, DEFAULT_REVISION),
        };
        if !is_repo_id(id) || !is_revision(revision) {
            return Err(not_a_model());
        }
        Ok(Self::Hub(RepoRef {
            id: id.to_string(),
            revision: revision.to_string(),
        }))
    }
}

/// A 40-digit lowercase hex commit hash.
pub fn is_commit_hash(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `ORG/NAME`: two parts of letters, digits, `-`, `_` and `.`, neither
/// starting with `.` or `-`, as the Hub allows.
fn is_repo_id(text: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    matches!(text.split_once('/'), Some((org, name)) if part(org) && part(name))
}

/// A branch, tag or commit: no empty text, no `..`, no leading `/` or `-`.
fn is_revision(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(['/', '-'])
        && !text.contains("..")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(text: &str) -> RepoRef {
        match ModelSpec::parse(Path::new(text)).unwrap() {
            ModelSpec::Hub(repo) => repo,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn repo_ids_with_and_without_a_revision() {
        let repo = hub("cross-encoder/ms-marco-MiniLM-L6-v2");
        assert_eq!(repo.id, "cross-encoder/ms-marco-MiniLM-L6-v2");
        assert_eq!(repo.revision, "main");
        assert!(!repo.is_commit());
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let repo = hub(&format!("org/name@{sha}"));
        assert_eq!(repo.revision, sha);
        assert!(repo.is_commit());
        assert_eq!(hub("org/name@v1.0").to_string(), "org/name@v1.0");
        assert_eq!(hub("org/name@refs/pr/1").revision, "refs/pr/1");
    }

    #[test]
    fn an_existing_directory_is_local_even_if_it_looks_like_an_id() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("org/name");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            ModelSpec::parse(&dir).unwrap(),
            ModelSpec::Local(dir.clone())
        );
    }

    #[test]
    fn paths_and_malformed_ids_are_not_hub_lookups() {
        for text in [
            "/no/such/model",
            "./model",
            "model",
            "a/b/c",
            "org/",
            "/name",
            "org/na me",
            "org/name@",
            "org/name@../x",
            "../name",
            "~/models/x",
        ] {
            let err = ModelSpec::parse(Path::new(text)).unwrap_err();
            assert!(matches!(err, HubError::NotAModel { .. }), "{text}: {err}");
            assert!(err.to_string().contains("ORG/NAME"), "{err}");
        }
    }
}
