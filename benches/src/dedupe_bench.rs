//! `crossflow-dedupe-bench`: `crossflow dedupe` at scale on synthetic but
//! realistic data: real sentences from ../shared/data, with injected exact
//! copies (case / whitespace changed) and injected paraphrases (STS-B pairs
//! scored ≥ 4 of 5, MSRP positives). Reports time per stage, pairs verified,
//! peak memory, and how many injected duplicates were found.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[path = "rss.rs"]
mod rss;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::UInt64Type;
use clap::Parser;
use crossflow_pipelines::cli::{Cli as CrossflowCli, Command};
use crossflow_pipelines::dedupe::DedupeSummary;
use crossflow_tests::read_parquet;
use parquet::arrow::ArrowWriter;
use rss::peak_rss_mb;

/// Dedupe scale benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Row counts to run
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    rows: Vec<usize>,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Neighbour search of the timed runs (exact, hnsw, auto)
    #[arg(long, default_value = "auto")]
    search: String,
    /// Rows of the run comparing HNSW candidates with exact ones (0: skip)
    #[arg(long, default_value_t = 10000)]
    recall_rows: usize,
}

struct Corpus {
    sentences: Vec<String>,
    paraphrases: Vec<(String, String)>,
}

fn corpus(data: &Path) -> Result<Corpus> {
    let mut seen = HashSet::new();
    let mut sentences = Vec::new();
    let mut paraphrases = Vec::new();
    let add = |s: &str, seen: &mut HashSet<String>, out: &mut Vec<String>| {
        if seen.insert(s.to_lowercase()) {
            out.push(s.to_string());
        }
    };
    for file in ["stsbenchmark/sts-train.csv", "stsbenchmark/sts-dev.csv"] {
        for line in read(&data.join(file))?.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 7 {
                continue;
            }
            if cols[4].parse::<f32>().unwrap_or(0.0) >= 4.0 {
                paraphrases.push((cols[5].to_string(), cols[6].to_string()));
            }
            add(cols[5], &mut seen, &mut sentences);
            add(cols[6], &mut seen, &mut sentences);
        }
    }
    for file in ["msrp/msr-para-train.tsv", "msrp/msr-para-val.tsv"] {
        for line in read(&data.join(file))?.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() == 5 {
                if cols[0] == "1" {
                    paraphrases.push((cols[3].to_string(), cols[4].to_string()));
                }
                add(cols[3], &mut seen, &mut sentences);
                add(cols[4], &mut seen, &mut sentences);
            }
        }
    }
    for line in read(&data.join("snli/validation.tsv"))?.lines().skip(1) {
        for text in line.split('\t').take(2) {
            add(text, &mut seen, &mut sentences);
        }
    }
    let paraphrase_texts: HashSet<String> = paraphrases
        .iter()
        .flat_map(|(a, b)| [a.to_lowercase(), b.to_lowercase()])
        .collect();
    sentences.retain(|s| !paraphrase_texts.contains(&s.to_lowercase()));
    Ok(Corpus {
        sentences,
        paraphrases,
    })
}

fn read(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .trim_start_matches('\u{feff}')
        .to_string())
}

/// `n` rows: 10 % in injected paraphrase pairs, 10 % exact copies, the rest
/// distinct sentences (pairs of sentences joined once the pool runs out).
/// Returns the texts and the injected (row, row) duplicate pairs.
fn rows(corpus: &Corpus, n: usize) -> (Vec<String>, Vec<(usize, usize)>) {
    let mut texts = Vec::with_capacity(n);
    let mut injected = Vec::new();
    for (a, b) in corpus.paraphrases.iter().take(n / 20) {
        injected.push((texts.len(), texts.len() + 1));
        texts.push(a.clone());
        texts.push(b.clone());
    }
    let pool = &corpus.sentences;
    let copies = n / 10;
    let mut k = 0;
    while texts.len() < n - copies {
        let text = if k < pool.len() {
            pool[k].clone()
        } else {
            format!(
                "{} {}",
                pool[k % pool.len()],
                pool[(k / pool.len() * 7919 + k) % pool.len()]
            )
        };
        texts.push(text);
        k += 1;
    }
    let originals = texts.len();
    for c in 0..copies {
        let source = (c * 7) % originals;
        injected.push((source, texts.len()));
        texts.push(format!("  {}  ", texts[source].to_uppercase()));
    }
    (texts, injected)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let corpus = corpus(&args.data)?;
    eprintln!(
        "{} distinct sentences, {} paraphrase pairs",
        corpus.sentences.len(),
        corpus.paraphrases.len()
    );
    println!("CPU: {}\n", crossflow::CpuInfo::host());
    println!(
        "| rows | read | exact | embed | candidates | verify | write | total | candidate pairs | verified | duplicates | injected found | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.rows {
        let dir =
            std::env::temp_dir().join(format!("crossflow-dedupe-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (texts, injected) = rows(&corpus, n);
        let input = dir.join("in.parquet");
        write(&input, &texts)?;
        let output = dir.join("out.parquet");
        let started = Instant::now();
        let summary = dedupe(&input, &output, &args.search, None).await?;
        let total = started.elapsed().as_secs_f64();
        let out = read_parquet(&output);
        let clusters = out
            .column_by_name("cluster_id")
            .context("cluster_id")?
            .as_string::<i32>();
        let found = injected
            .iter()
            .filter(|(a, b)| clusters.value(*a) == clusters.value(*b))
            .count();
        let stage = |name: &str| {
            summary
                .stage_seconds
                .iter()
                .find(|(s, _)| *s == name)
                .map_or(0.0, |(_, t)| *t)
        };
        println!(
            "| {n} | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {total:.1}s | {} | {} | {} | {found} / {} | {:.0} MB |",
            stage("read"),
            stage("exact"),
            stage("embed"),
            stage("candidates"),
            stage("verify"),
            stage("write"),
            summary.candidates,
            summary.verified,
            summary.duplicates,
            injected.len(),
            peak_rss_mb()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    if args.recall_rows > 0 {
        recall(&corpus, args.recall_rows).await?;
    }
    Ok(())
}

/// Runs `crossflow dedupe` as the CLI would.
async fn dedupe(
    input: &Path,
    output: &Path,
    search: &str,
    pairs: Option<&Path>,
) -> Result<DedupeSummary> {
    let mut argv: Vec<String> = [
        "crossflow",
        "dedupe",
        "--text-column",
        "text",
        "--id-column",
        "id",
        "--search",
        search,
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend([
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ]);
    if let Some(pairs) = pairs {
        argv.extend(["--pairs-output".into(), pairs.display().to_string()]);
    }
    let cli = CrossflowCli::try_parse_from(argv)?;
    let Command::Dedupe(dedupe_args) = &cli.command else {
        anyhow::bail!("not dedupe")
    };
    Ok(crossflow_pipelines::dedupe::run(dedupe_args, &cli.models).await?)
}

/// Recall of HNSW candidate and verified pairs against exact search on the same rows.
async fn recall(corpus: &Corpus, n: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("crossflow-dedupe-recall-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (texts, _) = rows(corpus, n);
    let input = dir.join("in.parquet");
    write(&input, &texts)?;
    let mut sets = Vec::new();
    for search in ["exact", "hnsw"] {
        let pairs = dir.join(format!("pairs-{search}.parquet"));
        let started = Instant::now();
        let summary = dedupe(&input, &dir.join("out.parquet"), search, Some(&pairs)).await?;
        let candidates = summary
            .stage_seconds
            .iter()
            .find(|(s, _)| *s == "candidates")
            .map_or(0.0, |(_, t)| *t);
        eprintln!(
            "{search}: candidate search {candidates:.1}s, total {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let batch = read_parquet(&pairs);
        let (a, b) = (
            batch.column_by_name("row_a").context("row_a")?,
            batch.column_by_name("row_b").context("row_b")?,
        );
        let (a, b) = (
            a.as_primitive::<UInt64Type>(),
            b.as_primitive::<UInt64Type>(),
        );
        let verified = batch
            .column_by_name("verified")
            .context("verified")?
            .as_boolean();
        let all: HashSet<(u64, u64)> = (0..batch.num_rows())
            .map(|r| (a.value(r), b.value(r)))
            .collect();
        let kept: HashSet<(u64, u64)> = (0..batch.num_rows())
            .filter(|&r| verified.value(r))
            .map(|r| (a.value(r), b.value(r)))
            .collect();
        sets.push((all, kept, candidates));
    }
    let share = |x: &HashSet<(u64, u64)>, y: &HashSet<(u64, u64)>| {
        x.intersection(y).count() as f64 / y.len().max(1) as f64
    };
    println!(
        "\nHNSW against exact search, {n} rows: candidate-pair recall {:.3}, verified-pair recall {:.3}; candidate search {:.1}s (exact) vs {:.1}s (HNSW)",
        share(&sets[1].0, &sets[0].0),
        share(&sets[1].1, &sets[0].1),
        sets[0].2,
        sets[1].2
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn write(path: &Path, texts: &[String]) -> Result<()> {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..texts.len() as i64));
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(texts));
    let batch = RecordBatch::try_from_iter([("id", ids), ("text", text)])?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
