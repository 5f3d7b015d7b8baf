//! The `quality` bench: recall and false merges of `dedupe-stream` next to
//! the batch `dedupe` on the same rows in the same order.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use clap::Parser;
use crossflow_pipelines::cli::{Cli as CrossflowCli, Command};
use parquet::arrow::ArrowWriter;
use rdkafka::message::Message;
use serde_json::Value;

use super::{broker, outputs, produce, start};

/// Labelled pairs of a dev split: (a, b, duplicate).
fn labelled(data: &Path, split: &str) -> Result<Vec<(String, String, bool)>> {
    let read = |p: &str| std::fs::read_to_string(data.join(p)).with_context(|| p.to_string());
    Ok(match split {
        "STS-B dev" => read("stsbenchmark/sts-dev.csv")?
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                Some((
                    c.get(5)?.to_string(),
                    c.get(6)?.to_string(),
                    c.get(4)?.parse::<f32>().ok()? >= 4.0,
                ))
            })
            .collect(),
        _ => read("msrp/msr-para-val.tsv")?
            .trim_start_matches('\u{feff}')
            .lines()
            .skip(1)
            .filter_map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (c.len() == 5).then(|| (c[3].to_string(), c[4].to_string(), c[0] == "1"))
            })
            .collect(),
    })
}

/// The distinct sentences of `pairs` in a fixed shuffled order.
fn shuffled(pairs: &[(String, String, bool)]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut sentences: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b, _)| [a.clone(), b.clone()])
        .filter(|s| seen.insert(s.clone()))
        .collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..sentences.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        sentences.swap(i, (state >> 33) as usize % (i + 1));
    }
    sentences
}

pub async fn quality(data: &Path) -> Result<()> {
    println!(
        "| data | job | rows | duplicates | recall of duplicate pairs | false merges | seconds |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for split in ["STS-B dev", "MSRP validation"] {
        let pairs = labelled(data, split)?;
        let sentences = shuffled(&pairs);
        for job in ["batch", "stream"] {
            let started = Instant::now();
            let cluster = match job {
                "batch" => batch_clusters(&sentences).await?,
                _ => stream_clusters(&sentences).await?,
            };
            let seconds = started.elapsed().as_secs_f64();
            let index: HashMap<&str, usize> = sentences
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let same = |a: &str, b: &str| cluster[index[a]] == cluster[index[b]];
            let rate = |want: bool| {
                let chosen: Vec<_> = pairs.iter().filter(|p| p.2 == want).collect();
                let hits = chosen.iter().filter(|(a, b, _)| same(a, b)).count();
                (hits as f64 / chosen.len() as f64, chosen.len())
            };
            let ((recall, positives), (false_merges, negatives)) = (rate(true), rate(false));
            let duplicates = cluster
                .iter()
                .enumerate()
                .filter(|(i, c)| *i != **c)
                .count();
            println!(
                "| {split} | {job} | {} | {duplicates} | {recall:.3} (of {positives}) | {false_merges:.3} (of {negatives}) | {seconds:.1} |",
                sentences.len()
            );
        }
    }
    Ok(())
}

/// The batch job's cluster (as a row index) of every sentence.
async fn batch_clusters(sentences: &[String]) -> Result<Vec<usize>> {
    let dir = tempfile::tempdir()?;
    let (input, output) = (
        dir.path().join("in.parquet"),
        dir.path().join("out.parquet"),
    );
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..sentences.len() as i64));
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(sentences));
    let batch = RecordBatch::try_from_iter([("id", ids), ("text", text)])?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&input)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    let argv = [
        "crossflow",
        "dedupe",
        "--text-column",
        "text",
        "--id-column",
        "id",
        "--input",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ]);
    let cli = CrossflowCli::try_parse_from(argv)?;
    let Command::Dedupe(args) = &cli.command else {
        anyhow::bail!("not dedupe")
    };
    crossflow_pipelines::dedupe::run(args, &cli.models).await?;
    let out = crossflow_tests::read_parquet(&output);
    let clusters = out
        .column_by_name("cluster_id")
        .context("cluster_id")?
        .as_string::<i32>();
    Ok((0..out.num_rows())
        .map(|r| clusters.value(r).parse().unwrap())
        .collect())
}

/// The stream job's cluster (as a row index) of every sentence.
async fn stream_clusters(sentences: &[String]) -> Result<Vec<usize>> {
    let broker = broker().await;
    produce(&broker, sentences, 0, None).await?;
    let (stop, task) = start(&broker, "quality")?;
    let out = outputs(&broker, sentences.len());
    stop.send(true)?;
    task.await??;
    let mut cluster: Vec<usize> = (0..sentences.len()).collect();
    for m in &out {
        let v: Value = serde_json::from_slice(m.payload().context("payload")?)?;
        let id = v["id"].as_u64().context("id")? as usize;
        if let Some(of) = v["duplicate_of"].as_u64() {
            cluster[id] = of as usize;
        }
    }
    Ok(cluster)
}
