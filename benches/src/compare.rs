//! `crossflow-bench compare`: scores on a device against the CPU's.

use std::path::PathBuf;

use anyhow::{Result, bail};
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
}

/// Scores the profiles on the CPU and on `--device`; prints the largest
/// absolute logit difference per profile. Fails when the device cannot be used.
pub fn compare(args: &CompareArgs) -> Result<()> {
    let reference_file = args.against_onnx_file.as_deref().unwrap_or(&args.onnx_file);
    let cpu = CrossEncoder::load(
        &args.model,
        &options("default", reference_file, Device::Cpu, None)?,
    )?;
    let device = CrossEncoder::load(
        &args.model,
        &options("default", &args.onnx_file, args.device, None)?,
    )?;
    for profile in &args.profiles {
        let set = datasets::load(profile, &args.data, args.limit)?;
        let pairs: Vec<(&str, &str)> = set
            .pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (x, y) = (cpu.predict_pairs(&pairs)?, device.predict_pairs(&pairs)?);
        let worst = (0..pairs.len())
            .flat_map(|i| {
                x.logits(i)
                    .iter()
                    .zip(y.logits(i))
                    .map(|(a, b)| (a - b).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0f32, f32::max);
        println!(
            "{profile}: {} pairs, max |logit {} ({}) - logit cpu ({})| = {worst:.2e}",
            pairs.len(),
            args.device,
            args.onnx_file.display(),
            reference_file.display()
        );
        if let Some(tolerance) = args.tolerance.filter(|t| worst > *t) {
            bail!("{profile}: difference {worst:.2e} over the tolerance {tolerance:.0e}");
        }
    }
    Ok(())
}
