//! Model directories as sentence-transformers publishes them: which files are
//! where ([`files`]) and what their configuration says ([`config`]).

pub mod config;
mod description;
pub mod files;
mod fingerprint;
pub mod graph;
mod onnx;
mod per_pair;
mod proto;
mod unpadded;

pub use config::ModelConfig;
pub use description::ModelDescription;
pub use files::ModelFiles;
pub use fingerprint::Fingerprint;
