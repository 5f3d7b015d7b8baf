//! `crossflow-search-bench`: the dedupe job's exact candidate search on
//! synthetic unit vectors — seconds and GFLOP/s (2·n²·dim for the n² dot
//! products) on this machine, all cores.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use crossflow_pipelines::dedupe::candidates::exact_top_k;

/// Times the exact top-k search.
#[derive(Debug, Parser)]
#[command(name = "crossflow-search-bench")]
struct Args {
    /// Vectors searched
    #[arg(long, value_delimiter = ',', default_value = "10000,30000")]
    rows: Vec<usize>,
    /// Dimensions (the bundled bi-encoder's: 384)
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// Neighbours per row
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Minimum cosine of a candidate
    #[arg(long, default_value_t = 0.75)]
    min_cosine: f32,
}

/// `n` unit vectors from a fixed-seed generator; every tenth a slightly
/// perturbed copy of the one before, so there are candidates to keep.
fn vectors(n: usize, dim: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut out: Vec<f32> = Vec::with_capacity(n * dim);
    for row in 0..n {
        let start = out.len();
        for d in 0..dim {
            let noise = next();
            let value = if row % 10 == 9 {
                out[start - dim + d] + 0.05 * noise
            } else {
                noise
            };
            out.push(value);
        }
        let norm = out[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
        out[start..].iter_mut().for_each(|x| *x /= norm);
    }
    out
}

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("CPU: {}\n", crossflow::CpuInfo::host());
    println!("| rows | dim | threads | seconds | GFLOP/s | candidate pairs |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &n in &args.rows {
        let data = vectors(n, args.dim);
        let valid = vec![true; n];
        let started = Instant::now();
        let found = exact_top_k(
            &data,
            args.dim,
            &valid,
            args.top_k,
            args.min_cosine,
            threads,
        );
        let seconds = started.elapsed().as_secs_f64();
        let gflops = 2.0 * (n as f64).powi(2) * args.dim as f64 / seconds / 1e9;
        println!(
            "| {n} | {} | {threads} | {seconds:.2} | {gflops:.1} | {} |",
            args.dim,
            found.len()
        );
    }
    Ok(())
}
