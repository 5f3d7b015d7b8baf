//! A model's fingerprint: a hash of everything that decides its results, so
//! that processes which must give the same scores (the nodes of a cluster)
//! can check they loaded the same model the same way.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::model::ModelFiles;
use crate::{Error, Result};

/// SHA-256 over a model's files (the ONNX graph, the tokenizer, the
/// configurations; contents, not paths) and the settings that change its
/// results (maximum length, head and activation, batch invariance, crossflow
/// version, the ONNX Runtime graph optimizers crossflow skips on the CPU).
/// The execution device and CPU are not part of it: see docs/correctness.md,
/// "Scores across CPUs".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Hashes the files of `files` and the `settings` line.
    pub fn of(files: &ModelFiles, settings: &str) -> Result<Self> {
        Self::with_engine(files, settings, crate::session::CPU_DISABLED_OPTIMIZERS)
    }

    /// [`Fingerprint::of`] with `engine`, how the engine runs every model (its
    /// CPU session settings), hashed in.
    fn with_engine(files: &ModelFiles, settings: &str, engine: &str) -> Result<Self> {
        let mut hasher = Sha256::new();
        let optional = [
            ("tokenizer_config", files.tokenizer_config.as_deref()),
            ("st_config", files.st_config.as_deref()),
        ];
        let required = [
            ("onnx", Some(files.onnx.as_path())),
            ("tokenizer", Some(files.tokenizer.as_path())),
            ("config", Some(files.config.as_path())),
        ];
        for (role, path) in required.into_iter().chain(optional) {
            hasher.update(role.as_bytes());
            match path {
                Some(path) => hash_file(&mut hasher, path)?,
                None => hasher.update(b"-"),
            }
        }
        hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
        hasher.update(engine.as_bytes());
        hasher.update(settings.as_bytes());
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self(hex))
    }

    /// Parses a fingerprint written by [`Fingerprint::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| Self(text.to_ascii_lowercase()))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shows the first 16 hex digits, enough to tell two models apart in a message.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0[..16])
    }
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let corrupt = |e: std::io::Error| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = File::open(path).map_err(corrupt)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(corrupt)?;
        if read == 0 {
            break;
        }
        length += read as u64;
        hasher.update(&buffer[..read]);
    }
    hasher.update(length.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(onnx: &[u8], config: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), onnx).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn fingerprint(dir: &tempfile::TempDir, settings: &str) -> Fingerprint {
        let files = ModelFiles::resolve(dir.path(), None).unwrap();
        Fingerprint::of(&files, settings).unwrap()
    }

    #[test]
    fn the_same_contents_give_the_same_fingerprint_wherever_they_are() {
        let (a, b) = (model_dir(b"graph", b"{}"), model_dir(b"graph", b"{}"));
        assert_eq!(fingerprint(&a, "s"), fingerprint(&b, "s"));
        let parsed = Fingerprint::parse(fingerprint(&a, "s").as_str()).unwrap();
        assert_eq!(parsed, fingerprint(&a, "s"));
        assert_eq!(fingerprint(&a, "s").to_string().len(), 16);
    }

    #[test]
    fn graph_config_and_settings_each_change_it() {
        let base = fingerprint(&model_dir(b"graph", b"{}"), "s");
        assert_ne!(base, fingerprint(&model_dir(b"graph2", b"{}"), "s"));
        assert_ne!(base, fingerprint(&model_dir(b"graph", b"{ }"), "s"));
        assert_ne!(base, fingerprint(&model_dir(b"graph", b"{}"), "t"));
        let other_tokenizer = model_dir(b"graph", b"{}");
        std::fs::write(other_tokenizer.path().join("tokenizer.json"), b"{ }").unwrap();
        assert_ne!(base, fingerprint(&other_tokenizer, "s"));
        let with_tokenizer_config = model_dir(b"graph", b"{}");
        std::fs::write(
            with_tokenizer_config.path().join("tokenizer_config.json"),
            b"{}",
        )
        .unwrap();
        assert_ne!(base, fingerprint(&with_tokenizer_config, "s"));
        let dir = model_dir(b"graph", b"{}");
        let files = ModelFiles::resolve(dir.path(), None).unwrap();
        let fused = Fingerprint::with_engine(&files, "s", "").unwrap();
        assert_ne!(base, fused, "the CPU session settings");
    }

    #[test]
    fn only_64_hex_digits_parse() {
        assert!(Fingerprint::parse("abc").is_none());
        assert!(Fingerprint::parse(&"g".repeat(64)).is_none());
        assert!(Fingerprint::parse(&"A".repeat(64)).is_some());
    }
}
