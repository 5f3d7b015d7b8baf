//! Finding and loading the models the flags name: a directory, a Hub repo id
//! (through `crossflow-hub`) or the bundled default, opened or started.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossflow::{BiEncoder, CrossEncoder, EngineOptions};
use crossflow_hub::HubSettings;
use crossflow_udfs::ModelSet;
use serde::Deserialize;

use super::{
    DEFAULT_BI_ENCODER, DEFAULT_NLI_MODEL, DEFAULT_SCORE_MODEL, ModelArgs, bundled_model_dir,
};
use crate::Result;

impl ModelArgs {
    /// Where Hub models come from: the environment's settings, with
    /// `--offline` and `--hf-token` over them.
    pub fn hub_settings(&self) -> HubSettings {
        let token = self.hf_token.as_ref().map(|t| t.0.as_str());
        HubSettings::from_env().overridden(self.offline, token, None)
    }

    /// The directory of `model` (a directory or Hub repo id; the bundled
    /// `bundled` when `None`) and `options` with its graph and origin.
    pub fn locate(
        &self,
        model: Option<&Path>,
        bundled: &str,
        options: EngineOptions,
    ) -> Result<(PathBuf, EngineOptions)> {
        let dir = match model {
            Some(model) => model.to_path_buf(),
            None => bundled_model_dir(bundled)?,
        };
        Ok(crossflow_hub::locate(&dir, options, &self.hub_settings())?)
    }

    /// Opens `--model` (or the bundled score model) without starting it: for
    /// a cluster client, which only plans.
    pub fn open_score_model(&self) -> Result<Arc<CrossEncoder>> {
        let (dir, options) = self.score_model(self.engine_options()?)?;
        Ok(Arc::new(CrossEncoder::open(dir, &options)?))
    }

    /// Loads `--model` (or the bundled score model).
    pub fn load_score_model(&self) -> Result<Arc<CrossEncoder>> {
        let (dir, options) = self.score_model(self.engine_options()?)?;
        Ok(Arc::new(CrossEncoder::load(dir, &options)?))
    }

    /// `--model`'s directory (or the bundled score model's) and `options` for it.
    fn score_model(&self, options: EngineOptions) -> Result<(PathBuf, EngineOptions)> {
        self.locate(self.model.as_deref(), DEFAULT_SCORE_MODEL, options)
    }

    /// Loads `--model` with the activation its configuration names, whatever
    /// `--activation` says: for jobs whose thresholds must keep one meaning.
    pub fn load_score_model_as_configured(&self) -> Result<Arc<CrossEncoder>> {
        let (dir, options) = self.score_model_as_configured()?;
        Ok(Arc::new(CrossEncoder::load(dir, &options)?))
    }

    /// [`load_score_model_as_configured`](Self::load_score_model_as_configured)'s
    /// model opened, not started: for a cluster client.
    pub fn open_score_model_as_configured(&self) -> Result<Arc<CrossEncoder>> {
        let (dir, options) = self.score_model_as_configured()?;
        Ok(Arc::new(CrossEncoder::open(dir, &options)?))
    }

    fn score_model_as_configured(&self) -> Result<(PathBuf, EngineOptions)> {
        self.score_model(EngineOptions {
            activation: None,
            ..self.engine_options()?
        })
    }

    /// Loads the bi-encoder `model` (a directory or Hub repo id; the bundled
    /// one when `None`) with these engine options (its own graph file:
    /// `--onnx-file` names the cross-encoder's).
    pub fn load_bi_encoder(&self, model: Option<&Path>) -> Result<BiEncoder> {
        let (dir, options) = self.bi_encoder(model)?;
        Ok(BiEncoder::load(dir, &options)?)
    }

    /// The bi-encoder `model` opened, not started: for a cluster client.
    pub fn open_bi_encoder(&self, model: Option<&Path>) -> Result<BiEncoder> {
        let (dir, options) = self.bi_encoder(model)?;
        Ok(BiEncoder::open(dir, &options)?)
    }

    /// The bi-encoder's directory and options: its own graph.
    fn bi_encoder(&self, model: Option<&Path>) -> Result<(PathBuf, EngineOptions)> {
        let options = EngineOptions {
            onnx_file: None,
            ..self.engine_options()?
        };
        self.locate(model, DEFAULT_BI_ENCODER, options)
    }

    /// Loads `--nli-model` (or the bundled NLI model).
    pub fn load_nli_model(&self) -> Result<Arc<CrossEncoder>> {
        let (dir, options) = self.nli_model()?;
        Ok(Arc::new(CrossEncoder::load(dir, &options)?))
    }

    /// The models of the SQL functions, for SQL sessions and cluster nodes:
    /// the score and NLI models and the bi-encoder `bi_encoder` (the bundled
    /// one when `None`), opened, not started. Each starts its sessions when a
    /// query first runs one of its functions, so a query that uses one model
    /// never starts the others, and a cluster client or scheduler that only
    /// plans starts none.
    pub fn load_model_set(&self, bi_encoder: Option<&Path>) -> Result<ModelSet> {
        let (dir, options) = self.score_model(self.engine_options()?)?;
        let score = CrossEncoder::open(dir, &options)?;
        let (dir, options) = self.nli_model()?;
        let nli = CrossEncoder::open(dir, &options)?;
        let (dir, options) = self.bi_encoder(bi_encoder)?;
        Ok(ModelSet {
            score: Arc::new(score),
            nli: Some(Arc::new(nli)),
            bi: Some(Arc::new(BiEncoder::open(dir, &options)?)),
        })
    }

    /// `--nli-model`'s directory and options: the model's own graph and activation.
    fn nli_model(&self) -> Result<(PathBuf, EngineOptions)> {
        let options = EngineOptions {
            onnx_file: None,
            activation: None,
            ..self.engine_options()?
        };
        self.locate(self.nli_model.as_deref(), DEFAULT_NLI_MODEL, options)
    }
}

/// A Hugging Face access token, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HubToken(pub String);

impl std::str::FromStr for HubToken {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self(text.to_string()))
    }
}

impl std::fmt::Debug for HubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubToken(<redacted>)")
    }
}
