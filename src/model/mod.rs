//! Model directories as sentence-transformers publishes them: which files are
//! where ([`files`]) and what their configuration says ([`config`]).

pub mod config;
mod description;
pub mod files;
mod fingerprint;
pub mod graph;
pub(crate) mod initializers;
mod onnx;
mod per_pair;
mod proto;
mod unpadded;

pub use config::ModelConfig;
pub use description::ModelDescription;
pub use files::ModelFiles;
pub use fingerprint::Fingerprint;

/// The int8 ONNX graph of the bundled model `name` (`models/NAME`).
#[cfg(test)]
pub(crate) fn bundled_int8(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
        .join("onnx/model_qint8_avx2.onnx")
}
