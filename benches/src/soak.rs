//! `crossflow-bench soak`: does the engine's memory stay bounded over a long
//! run of calls of every size and length? Calls of random size draw pairs at
//! random from all three profiles, so ONNX Runtime sees ever-changing input
//! shapes (what a stream looks like); the resident set size is sampled after
//! each call and printed as it evolves.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use crossflow::{CrossEncoder, Device};

use crate::Inputs;
use crate::datasets;
use crate::measure::options;
use crate::rss::rss_mb;

/// Arguments of `crossflow-bench soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Engine configuration (default, batched, tokens=N; see the full run)
    #[arg(long, default_value = "default")]
    config: String,
    /// Calls to make
    #[arg(long, default_value_t = 400)]
    calls: usize,
    /// Largest call, in pairs (each call has 1..=this many)
    #[arg(long, default_value_t = 128)]
    max_pairs: usize,
    #[command(flatten)]
    inputs: Inputs,
}

/// Runs the soak and prints RSS at tenths of the run, then a summary line.
pub fn soak(args: &SoakArgs) -> Result<()> {
    let mut pool = Vec::new();
    for profile in ["short", "medium", "long"] {
        pool.extend(datasets::load(profile, &args.inputs.data, 5000)?.pairs);
    }
    let model = CrossEncoder::load(
        &args.inputs.model,
        &options(&args.config, &args.inputs.onnx_file, Device::Cpu, None)?,
    )?;
    let loaded = rss_mb();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut pairs_run, mut max_rss) = (0usize, 0.0f64);
    let mut at_tenth = Vec::new();
    let started = Instant::now();
    for call in 1..=args.calls {
        let size = 1 + random.below(args.max_pairs);
        let pairs: Vec<(&str, &str)> = (0..size)
            .map(|_| {
                let (a, b) = &pool[random.below(pool.len())];
                (a.as_str(), b.as_str())
            })
            .collect();
        model.predict_pairs(&pairs)?;
        pairs_run += size;
        let rss = rss_mb();
        max_rss = max_rss.max(rss);
        if call * 10 % args.calls < 10 {
            eprintln!("call {call:>6}: {pairs_run:>8} pairs, RSS {rss:.0} MB");
            at_tenth.push(rss);
        }
    }
    let first = at_tenth.first().copied().unwrap_or(0.0);
    let last = at_tenth.last().copied().unwrap_or(0.0);
    println!(
        "soak {}: {} calls, {pairs_run} pairs in {:.0}s; RSS after loading {loaded:.0} MB, after the first tenth {first:.0} MB, at the end {last:.0} MB, max {max_rss:.0} MB; CPU: {}",
        args.config,
        args.calls,
        started.elapsed().as_secs_f64(),
        crossflow::CpuInfo::host()
    );
    Ok(())
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}
