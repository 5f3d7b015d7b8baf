//! crossflow's functions as one node of a cluster holds them: each bound to a
//! loaded model, with that model's fingerprint.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crossflow::Fingerprint;
use crossflow_udfs::{ModelSet, bound_model, cross_functions};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;

/// The part a process plays in a cluster (named in fingerprint errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// `crossflow sql --scheduler`: plans and submits queries.
    Client,
    /// `crossflow scheduler`.
    Scheduler,
    /// `crossflow executor`.
    Executor,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Node::Client => "client",
            Node::Scheduler => "scheduler",
            Node::Executor => "executor",
        })
    }
}

/// One crossflow function and the model behind it.
#[derive(Debug)]
pub struct ClusterFunction {
    /// The function, bound to this node's model.
    pub udf: Arc<ScalarUDF>,
    /// Its model's name and fingerprint; `None` for a function of no model
    /// (`cosine`).
    pub model: Option<(String, Fingerprint)>,
}

/// The crossflow functions of one node, by name.
#[derive(Debug)]
pub struct ClusterFunctions {
    node: Node,
    by_name: BTreeMap<String, ClusterFunction>,
}

impl ClusterFunctions {
    /// The functions of `models` ([`cross_functions`]) on a `node`.
    pub fn new(models: &ModelSet, node: Node) -> crossflow_udfs::Result<Self> {
        let by_name = cross_functions(models)?
            .into_iter()
            .map(|udf| {
                let function = ClusterFunction {
                    model: bound_model(&udf),
                    udf: Arc::new(udf),
                };
                (function.udf.name().to_string(), function)
            })
            .collect();
        Ok(Self { node, by_name })
    }

    /// Adds `udf`, a function of no model (every node must add the same).
    pub fn with_function(mut self, udf: ScalarUDF) -> Self {
        let function = ClusterFunction {
            udf: Arc::new(udf),
            model: None,
        };
        self.by_name
            .insert(function.udf.name().to_string(), function);
        self
    }

    /// The function registered as `name`.
    pub fn get(&self, name: &str) -> Option<&ClusterFunction> {
        self.by_name.get(name)
    }

    /// Every function.
    pub fn udfs(&self) -> impl Iterator<Item = Arc<ScalarUDF>> + '_ {
        self.by_name.values().map(|f| Arc::clone(&f.udf))
    }

    /// This node's `name`, if the plan's fingerprint `sent` is its model's
    /// (`None`: the plan carried none).
    pub fn checked(&self, name: &str, sent: Option<&str>) -> Result<Arc<ScalarUDF>> {
        let node = self.node;
        let function = self.get(name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{name}: this crossflow {node} has no such function (it needs the model the plan was made with)"
            ))
        })?;
        let Some((model, fingerprint)) = &function.model else {
            return Ok(Arc::clone(&function.udf));
        };
        let sent = sent.and_then(Fingerprint::parse).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{name}: the plan carries no valid model fingerprint: only a crossflow client \
                 (`crossflow sql --scheduler`) can submit crossflow's functions to this {node}"
            ))
        })?;
        if sent != *fingerprint {
            return Err(DataFusionError::Plan(format!(
                "{name}: model fingerprint mismatch: the plan was made with model fingerprint {sent}, \
                 but this crossflow {node} loaded {model} with fingerprint {fingerprint}. Every node \
                 must run the same crossflow version with the same model files and options \
                 (--model, --nli-model, --bi-encoder, --onnx-file, --max-length, --activation, \
                 --batch-invariant)"
            )));
        }
        Ok(Arc::clone(&function.udf))
    }
}
