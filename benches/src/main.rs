//! `crossflow-bench`: pairs/s of the crossflow engine against a plain Python
//! onnxruntime loop on the same model and the same real pairs, in one run.
//!
//! Each measurement runs in its own process (so peak memory is its own): the
//! orchestrator spawns `crossflow-bench one ...` per engine configuration and
//! `benches/python_baseline.py` for the baseline, then prints a markdown table.

mod compare;
mod datasets;
mod measure;
mod report;
mod rss;
mod soak;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Benchmarks of the crossflow engine.
#[derive(Debug, Parser)]
#[command(name = "crossflow-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one engine configuration on one profile (prints JSON).
    One(measure::OneArgs),
    /// Compare scores on a device (e.g. cuda) with the CPU's.
    Compare(compare::CompareArgs),
    /// Write the CPU logits of the profiles' pairs (a reference for `compare`).
    Reference(compare::ExportArgs),
    /// Write the profiles' pairs to a file that `--data` can read.
    ExportPairs(compare::ExportArgs),
    /// Memory over a long run of calls of random sizes and lengths.
    Soak(soak::SoakArgs),
}

/// The model and the data sets a run reads.
#[derive(Debug, Clone, Args)]
pub struct Inputs {
    /// Model directory
    #[arg(long, default_value = "models/crossflow-sts-minilm-l6")]
    pub model: PathBuf,
    /// ONNX file inside the model directory
    #[arg(long, default_value = "onnx/model_qint8_avx2.onnx")]
    pub onnx_file: PathBuf,
    /// Labelled data sets
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
}

/// Options of a full benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Pair profiles to run (short, medium, long)
    #[arg(long, value_delimiter = ',', default_value = "short,medium,long")]
    profiles: Vec<String>,
    /// Engine configurations: default, one-pair (int8 graphs one pair per batch),
    /// scales (int8 graphs with per-pair scales, batched), batched (int8 graphs
    /// batched as they are), or tokens=N (batched with that budget)
    #[arg(long, value_delimiter = ',', default_value = "default,batched")]
    configs: Vec<String>,
    /// Pairs per profile
    #[arg(long, default_value_t = 5000)]
    limit: usize,
    /// Timed runs per measurement, back to back in one process (the median is reported)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Rounds over all systems, one after the other (medians over rounds are reported)
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    #[command(flatten)]
    inputs: Inputs,
    /// Python with onnxruntime and tokenizers for the baseline ("" to skip it)
    #[arg(long, default_value = ".venv/bin/python")]
    python: String,
    /// Python with torch and sentence-transformers for the second baseline
    /// (skipped when it or --st-model is missing; see scripts/setup --sentence-transformers)
    #[arg(long, default_value = ".venv-st/bin/python")]
    st_python: String,
    /// PyTorch checkpoint of the model's weights for sentence-transformers
    /// (made by benches/onnx_to_torch.py)
    #[arg(long, default_value = "target/st-model")]
    st_model: PathBuf,
    /// Pair length limit in tokens (default: the model's)
    #[arg(long)]
    max_length: Option<usize>,
    /// Also write the results as CSV here
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Execution device of the engine runs (cpu, cuda, cuda:N)
    #[arg(long, default_value = "cpu")]
    device: crossflow::Device,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::One(args)) => measure::one(&args),
        Some(Command::Compare(args)) => compare::compare(&args),
        Some(Command::Reference(args)) => compare::reference(&args),
        Some(Command::ExportPairs(args)) => compare::export_pairs(&args),
        Some(Command::Soak(args)) => soak::soak(&args),
        None => measure::run(&cli.run),
    }
}
