//! Running measurements and printing them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use crossflow::BatchLimits;
use crossflow::{CrossEncoder, Device, EngineOptions};
use serde::{Deserialize, Serialize};

use crate::RunArgs;
use crate::datasets;
use crate::report::{Row, write_csv, write_markdown};
use crate::rss::peak_rss_mb;

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub system: String,
    pub pairs: usize,
    pub seconds: f64,
    pub pairs_per_s: f64,
    pub tokens: u64,
    pub padded_tokens: u64,
    pub peak_rss_mb: f64,
    /// Seconds to open the model (read its description and tokenizer) and
    /// to start it (load the graph into sessions, rewrite and check it where
    /// the configuration asks); crossflow only.
    #[serde(default)]
    pub open_start_s: Option<(f64, f64)>,
}

/// Arguments of `crossflow-bench one`.
#[derive(Debug, Clone, Args)]
pub struct OneArgs {
    #[arg(long)]
    profile: String,
    #[arg(long)]
    config: String,
    #[arg(long)]
    limit: usize,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    onnx_file: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long, default_value = "cpu")]
    device: Device,
    #[arg(long)]
    max_length: Option<usize>,
}

/// Engine options of a named configuration: `default`, `one-pair` (int8
/// graphs one pair per batch), `scales` (int8 graphs rewritten to per-pair
/// scales, batched), `batched` (int8 graphs batched as they are,
/// not batch-invariant) or `tokens=N` (that, with that budget), each with an
/// optional `@S` suffix for S sessions.
pub fn options(
    config: &str,
    onnx_file: &Path,
    device: Device,
    max_length: Option<usize>,
) -> Result<EngineOptions> {
    let (config, sessions) = match config.split_once('@') {
        Some((config, sessions)) => (config, Some(sessions.parse()?)),
        None => (config, None),
    };
    let mut options = EngineOptions {
        onnx_file: Some(onnx_file.to_path_buf()),
        sessions,
        device,
        limits: BatchLimits::for_device(device),
        max_length,
        // No cross-call cache: the timed repeats would be answered from it.
        cache_pairs: 0,
        ..EngineOptions::default()
    };
    match config.split_once('=') {
        None if config == "default" => {}
        None if config == "batched" => options.batch_invariant = Some(false),
        None if config == "one-pair" => options.per_pair_scales = Some(false),
        None if config == "scales" => options.per_pair_scales = Some(true),
        Some(("tokens", n)) => {
            options.batch_invariant = Some(false);
            options.limits.max_batch_tokens = n.parse()?;
        }
        _ => {
            bail!("unknown configuration {config:?} (default, one-pair, scales, batched, tokens=N)")
        }
    }
    Ok(options)
}

/// Measures one configuration in this process and prints it as JSON.
pub fn one(args: &OneArgs) -> Result<()> {
    let set = datasets::load(&args.profile, &args.data, args.limit)?;
    let options = options(&args.config, &args.onnx_file, args.device, args.max_length)?;
    let opening = Instant::now();
    let model = CrossEncoder::open(&args.model, &options)?;
    let (opened, starting) = (opening.elapsed().as_secs_f64(), Instant::now());
    model.start()?;
    let open_start_s = Some((opened, starting.elapsed().as_secs_f64()));
    let pairs: Vec<(&str, &str)> = set
        .pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    model.predict_pairs(&pairs[..pairs.len().min(64)])?;
    let warm = model.stats();
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        model.predict_pairs(&pairs)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let seconds = median(&mut times);
    let runs = times.len() as u64;
    let stats = model.stats();
    let limits = model.limits().expect("a model that ran is started");
    let measurement = Measurement {
        system: format!(
            "crossflow {} (tokens {}, pairs {}, sessions {})",
            args.config,
            limits.max_batch_tokens,
            limits.max_batch_pairs,
            model.sessions()
        ),
        pairs: pairs.len(),
        seconds,
        pairs_per_s: pairs.len() as f64 / seconds,
        tokens: (stats.tokens - warm.tokens) / runs,
        padded_tokens: (stats.padded_tokens - warm.padded_tokens) / runs,
        peak_rss_mb: peak_rss_mb(),
        open_start_s,
    };
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(())
}

/// The median of `times` (sorted in place).
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs every profile × configuration plus the baselines, then prints a table.
/// With several rounds, all systems run once per round, one after the other,
/// and each figure is the median over rounds; a ratio is the median of the
/// ratios within each round, so slow phases of the machine hit both sides.
pub fn run(args: &RunArgs) -> Result<()> {
    let mut systems = Vec::new();
    if !args.python.is_empty() {
        systems.push(System::PythonLoop);
    }
    if let Some((python, model)) = sentence_transformers(args) {
        systems.push(System::SentenceTransformers { python, model });
    }
    systems.extend(args.configs.iter().cloned().map(System::Engine));
    let mut rows = Vec::new();
    for profile in &args.profiles {
        let set = datasets::load(profile, &args.inputs.data, args.limit)?;
        eprintln!("{profile}: {} pairs", set.pairs.len());
        let mut rounds = Vec::new();
        for round in 1..=args.rounds.max(1) {
            let mut results = Vec::new();
            for system in &systems {
                let m = system.measure(args, &set)?;
                let start = m.open_start_s.map_or(String::new(), |(open, start)| {
                    format!(" (open {open:.2} s, start {start:.2} s)")
                });
                eprintln!(
                    "  round {round}: {:<90} {:>8.1} pairs/s{start}",
                    m.system, m.pairs_per_s
                );
                results.push(m);
            }
            rounds.push(results);
        }
        let label = match args.max_length {
            Some(n) => format!("{profile} (max {n} tokens)"),
            None => profile.clone(),
        };
        rows.extend(summarize(&label, &systems, &rounds));
    }
    write_markdown(&rows, &mut std::io::stdout())?;
    if let Some(path) = &args.csv {
        let mut file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
        write_csv(&rows, &mut file)?;
    }
    Ok(())
}

/// What one column of a round measures.
enum System {
    PythonLoop,
    SentenceTransformers { python: String, model: PathBuf },
    Engine(String),
}

impl System {
    fn measure(&self, args: &RunArgs, set: &datasets::PairSet) -> Result<Measurement> {
        match self {
            System::PythonLoop => python_baseline(args, set, None),
            System::SentenceTransformers { python, model } => {
                let args = RunArgs {
                    python: python.clone(),
                    ..args.clone()
                };
                python_baseline(&args, set, Some(model))
            }
            System::Engine(config) => engine_in_child(args, &set.name, config),
        }
    }
}

/// One row per system: its median round, with median within-round ratios.
fn summarize(label: &str, systems: &[System], rounds: &[Vec<Measurement>]) -> Vec<Row> {
    let position = |wanted: fn(&System) -> bool| systems.iter().position(wanted);
    let python_loop = position(|s| matches!(s, System::PythonLoop));
    let st = position(|s| matches!(s, System::SentenceTransformers { .. }));
    let ratio = |base: Option<usize>, i: usize| {
        base.map(|b| {
            let mut ratios: Vec<f64> = rounds
                .iter()
                .map(|r| r[i].pairs_per_s / r[b].pairs_per_s)
                .collect();
            median(&mut ratios)
        })
    };
    (0..systems.len())
        .map(|i| {
            let mut runs: Vec<&Measurement> = rounds.iter().map(|r| &r[i]).collect();
            runs.sort_by(|a, b| a.pairs_per_s.total_cmp(&b.pairs_per_s));
            Row {
                profile: label.to_string(),
                vs_loop: ratio(python_loop, i),
                vs_st: ratio(st, i),
                m: runs[runs.len() / 2].clone(),
            }
        })
        .collect()
}

/// The Python and checkpoint of the sentence-transformers baseline, when set up.
fn sentence_transformers(args: &RunArgs) -> Option<(String, PathBuf)> {
    let python = Path::new(&args.st_python);
    if args.st_python.is_empty() || !python.exists() || !args.st_model.exists() {
        eprintln!(
            "sentence-transformers baseline skipped: {} or {} missing (scripts/setup --sentence-transformers)",
            python.display(),
            args.st_model.display()
        );
        return None;
    }
    Some((args.st_python.clone(), args.st_model.clone()))
}

fn engine_in_child(args: &RunArgs, profile: &str, config: &str) -> Result<Measurement> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args([
            "one",
            "--profile",
            profile,
            "--config",
            config,
            "--limit",
            &args.limit.to_string(),
            "--repeat",
            &args.repeat.to_string(),
            "--device",
            &args.device.to_string(),
        ])
        .arg("--model")
        .arg(&args.inputs.model)
        .arg("--onnx-file")
        .arg(&args.inputs.onnx_file)
        .arg("--data")
        .arg(&args.inputs.data)
        .args(
            args.max_length
                .map(|n| ["--max-length".to_string(), n.to_string()])
                .into_iter()
                .flatten(),
        )
        .output()?;
    parse_child(output, &format!("engine {config} on {profile}"))
}

/// The Python onnxruntime loop, or with `st_model` sentence-transformers.
fn python_baseline(
    args: &RunArgs,
    set: &datasets::PairSet,
    st_model: Option<&Path>,
) -> Result<Measurement> {
    let model = CrossEncoder::load(
        &args.inputs.model,
        &options(
            "default",
            &args.inputs.onnx_file,
            Device::Cpu,
            args.max_length,
        )?,
    )?;
    let pairs_file = tempfile_path(&set.name);
    std::fs::write(&pairs_file, serde_json::to_string(&set.pairs)?)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python_baseline.py");
    let output = Command::new(&args.python)
        .arg(script)
        .arg("--model-dir")
        .arg(&args.inputs.model)
        .arg("--onnx")
        .arg(&model.files().onnx)
        .arg("--pairs")
        .arg(&pairs_file)
        .args(["--max-length", &model.max_length().to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .args(
            st_model
                .map(|m| ["--sentence-transformers".as_ref(), m.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .output()
        .with_context(|| format!("running {} (run scripts/setup --python)", args.python))?;
    let _ = std::fs::remove_file(&pairs_file);
    parse_child(output, "python baseline")
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "crossflow-bench-{}-{name}.json",
        std::process::id()
    ))
}

fn parse_child(output: std::process::Output, what: &str) -> Result<Measurement> {
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("{what}: unexpected output {line:?}"))
}
