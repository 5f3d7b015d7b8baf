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
use clap::Parser;
use crossflow_pipelines::cli::{Cli as CrossflowCli, Command};
use crossflow_pipelines::dedupe::DedupeSummary;
use crossflow_tests::read_parquet;
use parquet::arrow::ArrowWriter;
use rss::peak_rss_mb;

/// Dedupe scale benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Row counts to run (0: none, e.g. for a recall run only)
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    rows: Vec<usize>,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Neighbour search of the timed runs (exact, ivf, auto)
    #[arg(long, default_value = "auto")]
    search: String,
    /// More flags for every `crossflow dedupe` run (e.g. --job-arg=--ivf-probes=8)
    #[arg(long, allow_hyphen_values = true)]
    job_arg: Vec<String>,
    /// Rows whose distinct texts are embedded once and searched exactly and
    /// by IVF (each --probes), for candidate-pair recall (0: skip)
    #[arg(long, default_value_t = 10000)]
    search_recall_rows: usize,
    /// IVF probes compared in the recall run
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    probes: Vec<usize>,
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
        "| rows | read | exact | embed | candidates | verify | write | total | candidate pairs | scored | verified | duplicates | injected found | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in args.rows.iter().filter(|&&n| n > 0) {
        let dir =
            std::env::temp_dir().join(format!("crossflow-dedupe-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (texts, injected) = rows(&corpus, n);
        let input = dir.join("in.parquet");
        write(&input, &texts)?;
        let output = dir.join("out.parquet");
        let started = Instant::now();
        let summary = dedupe(&input, &output, &args.search, &args.job_arg).await?;
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
            "| {n} | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {:.1}s | {total:.1}s | {} | {} | {} | {} | {found} / {} | {:.0} MB |",
            stage("read"),
            stage("exact"),
            stage("embed"),
            stage("candidates"),
            stage("verify"),
            stage("write"),
            summary.candidates,
            summary.scored,
            summary.verified,
            summary.duplicates,
            injected.len(),
            peak_rss_mb()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    if args.search_recall_rows > 0 {
        search_recall(&corpus, &args)?;
    }
    Ok(())
}

/// Runs `crossflow dedupe` as the CLI would.
async fn dedupe(
    input: &Path,
    output: &Path,
    search: &str,
    more: &[String],
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
    argv.extend(more.iter().cloned());
    let cli = CrossflowCli::try_parse_from(argv)?;
    let Command::Dedupe(dedupe_args) = &cli.command else {
        anyhow::bail!("not dedupe")
    };
    Ok(crossflow_pipelines::dedupe::run(dedupe_args, &cli.models).await?)
}

/// The distinct texts of `n` rows embedded once by the bundled bi-encoder,
/// then searched exactly and by IVF: seconds and candidate-pair
/// recall against the exact search.
fn search_recall(corpus: &Corpus, args: &Args) -> Result<()> {
    use crossflow_pipelines::dedupe::candidates::exact_top_k;
    use crossflow_pipelines::dedupe::ivf::{IvfShape, ivf_top_k};
    use crossflow_pipelines::dedupe::normalize::normalize;
    use crossflow_pipelines::models::{DEFAULT_BI_ENCODER, bundled_model_dir};

    let n = args.search_recall_rows;
    let (texts, _) = rows(corpus, n);
    let mut seen = HashSet::new();
    let distinct: Vec<&str> = texts
        .iter()
        .filter(|t| seen.insert(normalize(t)))
        .map(String::as_str)
        .collect();
    let model = crossflow::BiEncoder::load(
        bundled_model_dir(DEFAULT_BI_ENCODER)?,
        &crossflow::EngineOptions::default(),
    )?;
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(distinct.len() * model.dimension());
    for chunk in distinct.chunks(4096) {
        vectors.extend(model.embed_texts(chunk)?);
    }
    let dim = model.dimension();
    println!(
        "\nSearch on {} distinct texts of {n} rows (embedded in {:.1}s), top 10, cosine >= 0.75, {} threads:\n",
        distinct.len(),
        started.elapsed().as_secs_f64(),
        threads()
    );
    println!("| search | seconds | candidate pairs | recall of exact pairs |");
    println!("|---|---:|---:|---:|");
    let valid = vec![true; distinct.len()];
    let timed = |name: String,
                 search: &dyn Fn() -> Vec<crossflow_pipelines::dedupe::candidates::Candidate>,
                 exact: Option<&HashSet<(usize, usize)>>| {
        let started = Instant::now();
        let found: HashSet<(usize, usize)> = search().iter().map(|c| (c.a, c.b)).collect();
        let seconds = started.elapsed().as_secs_f64();
        let recall = exact.map_or(1.0, |e| {
            e.intersection(&found).count() as f64 / e.len().max(1) as f64
        });
        println!("| {name} | {seconds:.1} | {} | {recall:.4} |", found.len());
        found
    };
    let exact = timed(
        "exact".into(),
        &|| exact_top_k(&vectors, dim, &valid, 10, 0.75, threads()),
        None,
    );
    for &probes in &args.probes {
        let shape = IvfShape::for_rows(distinct.len(), None, probes);
        timed(
            format!("ivf, {} lists, {probes} probes", shape.lists),
            &|| ivf_top_k(vectors.clone(), dim, &valid, 10, 0.75, shape, threads()),
            Some(&exact),
        );
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
