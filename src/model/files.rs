//! Locating the files of a model directory.
//!
//! The layout is the one public sentence-transformers cross-encoders use:
//! `config.json`, `tokenizer.json`, optional `tokenizer_config.json` /
//! `config_sentence_transformers.json`, and the graph either at `model.onnx`
//! or under `onnx/` (`onnx/model.onnx`, `onnx/model_qint8_avx2.onnx`, ...).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Paths of the files that make up one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The model directory itself.
    pub dir: PathBuf,
    /// The ONNX graph.
    pub onnx: PathBuf,
    /// HF `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// HF `config.json`.
    pub config: PathBuf,
    /// `tokenizer_config.json`, when present.
    pub tokenizer_config: Option<PathBuf>,
    /// `config_sentence_transformers.json`, when present.
    pub st_config: Option<PathBuf>,
}

impl ModelFiles {
    /// Resolves the files of `dir`. `onnx_file`, when given, selects the graph:
    /// a path relative to `dir` (`onnx/model_qint8_avx2.onnx`) or absolute.
    pub fn resolve(dir: impl AsRef<Path>, onnx_file: Option<&Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::ModelDirMissing { path: dir });
        }
        let onnx = match onnx_file {
            Some(file) => required(dir.join(file), "the ONNX graph chosen with --onnx-file")?,
            None => default_onnx(&dir)?,
        };
        Ok(Self {
            onnx,
            tokenizer: required(dir.join("tokenizer.json"), "the HF tokenizer")?,
            config: required(dir.join("config.json"), "the model configuration")?,
            tokenizer_config: optional(dir.join("tokenizer_config.json")),
            st_config: optional(dir.join("config_sentence_transformers.json")),
            dir,
        })
    }
}

fn required(path: PathBuf, what: &'static str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ModelFileMissing { path, what })
    }
}

fn optional(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// `model.onnx`, then `onnx/model.onnx`, then the only `onnx/*.onnx` file.
fn default_onnx(dir: &Path) -> Result<PathBuf> {
    for candidate in [dir.join("model.onnx"), dir.join("onnx").join("model.onnx")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let mut found = onnx_files_in(&dir.join("onnx"));
    match found.len() {
        0 => Err(Error::ModelFileMissing {
            path: dir.join("model.onnx"),
            what: "the ONNX graph (model.onnx or onnx/*.onnx)",
        }),
        1 => Ok(found.remove(0)),
        _ => Err(Error::AmbiguousOnnxFile {
            dir: dir.to_path_buf(),
            candidates: found
                .iter()
                .filter_map(|p| p.strip_prefix(dir).ok())
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn onnx_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    fn model_dir(onnx: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("tokenizer.json"));
        touch(&dir.path().join("config.json"));
        for file in onnx {
            touch(&dir.path().join(file));
        }
        dir
    }

    #[test]
    fn prefers_model_onnx_then_the_only_file_under_onnx() {
        let dir = model_dir(&["onnx/model.onnx", "onnx/model_qint8_avx2.onnx"]);
        let files = ModelFiles::resolve(dir.path(), None).unwrap();
        assert_eq!(files.onnx, dir.path().join("onnx/model.onnx"));

        let dir = model_dir(&["onnx/model_qint8_avx2.onnx"]);
        let files = ModelFiles::resolve(dir.path(), None).unwrap();
        assert_eq!(files.onnx, dir.path().join("onnx/model_qint8_avx2.onnx"));
        assert_eq!(files.tokenizer_config, None);
    }

    #[test]
    fn several_candidates_without_a_default_is_an_error_listing_them() {
        let dir = model_dir(&["onnx/model_O1.onnx", "onnx/model_qint8_avx2.onnx"]);
        let err = ModelFiles::resolve(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onnx/model_O1.onnx") && err.contains("--onnx-file"),
            "{err}"
        );
        let chosen = ModelFiles::resolve(dir.path(), Some(Path::new("onnx/model_O1.onnx")));
        assert_eq!(chosen.unwrap().onnx, dir.path().join("onnx/model_O1.onnx"));
    }

    #[test]
    fn missing_files_are_named() {
        let dir = model_dir(&[]);
        let err = ModelFiles::resolve(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.onnx"), "{err}");

        let dir = model_dir(&["model.onnx"]);
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let err = ModelFiles::resolve(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");

        let err = ModelFiles::resolve("/no/such/model", None).unwrap_err();
        assert!(matches!(err, Error::ModelDirMissing { .. }));
    }
}
