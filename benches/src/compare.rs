//! `crossflow-bench compare`: scores on a device against the CPU's, run
//! beside them or read from a reference file made on another machine
//! (`crossflow-bench reference`); `crossflow-bench export-pairs` writes the
//! pairs such a machine needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use crossflow::{CrossEncoder, Device};

use crate::datasets;
use crate::measure::options;

/// Arguments of `crossflow-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    #[arg(long, value_delimiter = ',', default_value = "short,medium,long")]
    profiles: Vec<String>,
    #[arg(long, default_value_t = 500)]
    limit: usize,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    onnx_file: PathBuf,
    /// The ONNX file whose scores are compared with `--onnx-file` on the CPU (default: the same)
    #[arg(long)]
    against_onnx_file: Option<PathBuf>,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    #[arg(long)]
    device: Device,
    /// Fail when a logit differs by more than this
    #[arg(long)]
    tolerance: Option<f32>,
    /// CPU logits made by `crossflow-bench reference` (instead of running the CPU here)
    #[arg(long)]
    reference: Option<PathBuf>,
}

/// Arguments of `crossflow-bench reference` and `crossflow-bench export-pairs`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[arg(long, value_delimiter = ',', default_value = "short,medium,long")]
    profiles: Vec<String>,
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// Model directory (reference only)
    #[arg(long)]
    model: Option<PathBuf>,
    /// ONNX file of the model (reference only)
    #[arg(long, default_value = "onnx/model.onnx")]
    onnx_file: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Where to write the JSON
    #[arg(long)]
    out: PathBuf,
}

/// Logits per profile, pair by pair, as `crossflow-bench reference` writes them.
type Reference = BTreeMap<String, Vec<Vec<f32>>>;

/// Writes the profiles' pairs as a pairs file (see [`datasets::load`]).
pub fn export_pairs(args: &ExportArgs) -> Result<()> {
    let mut sets = BTreeMap::new();
    for profile in &args.profiles {
        sets.insert(
            profile.clone(),
            datasets::load(profile, &args.data, args.limit)?.pairs,
        );
    }
    write_json(&args.out, &sets)
}

/// Writes the CPU logits of the profiles' pairs.
pub fn reference(args: &ExportArgs) -> Result<()> {
    let dir = args.model.as_deref().context("reference needs --model")?;
    let model = CrossEncoder::load(
        dir,
        &options("default", &args.onnx_file, Device::Cpu, None)?,
    )?;
    let mut reference = Reference::new();
    for profile in &args.profiles {
        let set = datasets::load(profile, &args.data, args.limit)?;
        let pairs = borrowed(&set.pairs);
        let predictions = model.predict_pairs(&pairs)?;
        let logits = (0..pairs.len())
            .map(|i| predictions.logits(i).to_vec())
            .collect();
        reference.insert(profile.clone(), logits);
    }
    write_json(&args.out, &reference)
}

/// What the device's logits are compared with.
enum Expected {
    Stored(Reference),
    Cpu(Box<CrossEncoder>),
}

impl Expected {
    fn logits(&self, profile: &str, pairs: &[(&str, &str)]) -> Result<Vec<Vec<f32>>> {
        match self {
            Expected::Stored(stored) => stored
                .get(profile)
                .cloned()
                .with_context(|| format!("the reference has no profile {profile}")),
            Expected::Cpu(model) => {
                let predictions = model.predict_pairs(pairs)?;
                Ok((0..pairs.len())
                    .map(|i| predictions.logits(i).to_vec())
                    .collect())
            }
        }
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Scores the profiles on the CPU and on `--device`; prints the largest
/// absolute logit difference per profile. Fails when the device cannot be used.
pub fn compare(args: &CompareArgs) -> Result<()> {
    let reference_file = args.against_onnx_file.as_deref().unwrap_or(&args.onnx_file);
    let expected = match &args.reference {
        Some(path) => Expected::Stored(
            serde_json::from_str(&std::fs::read_to_string(path)?)
                .with_context(|| format!("{}: not a reference file", path.display()))?,
        ),
        None => Expected::Cpu(Box::new(CrossEncoder::load(
            &args.model,
            &options("default", reference_file, Device::Cpu, None)?,
        )?)),
    };
    let device = CrossEncoder::load(
        &args.model,
        &options("default", &args.onnx_file, args.device, None)?,
    )?;
    for profile in &args.profiles {
        let set = datasets::load(profile, &args.data, args.limit)?;
        let pairs = borrowed(&set.pairs);
        let expected = expected.logits(profile, &pairs)?;
        ensure!(
            expected.len() == pairs.len(),
            "{profile}: {} reference rows for {} pairs",
            expected.len(),
            pairs.len()
        );
        let y = device.predict_pairs(&pairs)?;
        let worst = expected
            .iter()
            .enumerate()
            .flat_map(|(i, want)| {
                want.iter()
                    .zip(y.logits(i))
                    .map(|(a, b)| (a - b).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0f32, f32::max);
        let against = match &args.reference {
            Some(path) => format!("reference {}", path.display()),
            None => format!("logit cpu ({})", reference_file.display()),
        };
        println!(
            "{profile}: {} pairs, max |logit {} ({}) - {against}| = {worst:.2e}",
            pairs.len(),
            args.device,
            args.onnx_file.display(),
        );
        if let Some(tolerance) = args.tolerance.filter(|t| worst > *t) {
            bail!("{profile}: difference {worst:.2e} over the tolerance {tolerance:.0e}");
        }
    }
    Ok(())
}

/// The pairs as string slices.
fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}
