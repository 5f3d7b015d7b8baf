//! `crossflow-eval`: quality of the two-stage pipelines on labelled data.
//!
//! 1. Dedupe decisions on MSRP paraphrase pairs: precision / recall / F1 of a
//!    bi-encoder cosine threshold alone, of the cross-encoder alone, and of
//!    bi-encoder candidates (cosine ≥ c) verified by the cross-encoder
//!    (score ≥ t). Thresholds are chosen on the train split, reported on the
//!    validation split.
//! 2. Re-ranking TREC-QA answer candidates: MAP and MRR of the bi-encoder
//!    (first stage), the cross-encoder, and a fusion of the two (weighted sum
//!    of per-question min-max normalised scores, weight chosen on train),
//!    reported on dev.

#[path = "datasets.rs"]
#[allow(dead_code)]
mod datasets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use crossflow::{BiEncoder, CrossEncoder, EngineOptions};

/// Quality tables of crossflow's two-stage jobs.
#[derive(Debug, Parser)]
struct Args {
    /// Labelled data sets
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Cross-encoder
    #[arg(long, default_value = "models/crossflow-sts-minilm-l6")]
    model: PathBuf,
    /// Bi-encoder
    #[arg(long, default_value = "models/all-minilm-l6-v2")]
    bi_encoder: PathBuf,
}

struct Labelled {
    pairs: Vec<(String, String)>,
    labels: Vec<bool>,
}

struct Scored {
    cosine: Vec<f32>,
    cross: Vec<f32>,
    labels: Vec<bool>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "CPU: {} (int8 scores depend on it)\n",
        crossflow::CpuInfo::host()
    );
    let options = EngineOptions::default();
    let cross = CrossEncoder::load(&args.model, &options)?;
    let bi = BiEncoder::load(&args.bi_encoder, &options)?;
    let train = score(
        &msrp(&args.data.join("msrp/msr-para-train.tsv"))?,
        &bi,
        &cross,
    )?;
    let val = score(
        &msrp(&args.data.join("msrp/msr-para-val.tsv"))?,
        &bi,
        &cross,
    )?;
    dedupe_table(&train, &val);
    rerank_table(&args.data, &bi, &cross)?;
    Ok(())
}

fn msrp(path: &Path) -> Result<Labelled> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header = lines.next().unwrap_or_default();
    ensure!(
        header.starts_with("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"),
        "{}: unexpected header",
        path.display()
    );
    let mut out = Labelled {
        pairs: Vec::new(),
        labels: Vec::new(),
    };
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        ensure!(cols.len() == 5, "{}: expected 5 columns", path.display());
        out.pairs.push((cols[3].to_string(), cols[4].to_string()));
        out.labels.push(cols[0] == "1");
    }
    Ok(out)
}

fn cosines(bi: &BiEncoder, pairs: &[(String, String)]) -> Result<Vec<f32>> {
    let a: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let b: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let (ea, eb) = (bi.embed_texts(&a)?, bi.embed_texts(&b)?);
    let dim = bi.dimension();
    Ok((0..pairs.len())
        .map(|i| {
            ea[i * dim..(i + 1) * dim]
                .iter()
                .zip(&eb[i * dim..(i + 1) * dim])
                .map(|(x, y)| x * y)
                .sum()
        })
        .collect())
}

fn cross_scores(cross: &CrossEncoder, pairs: &[(String, String)]) -> Result<Vec<f32>> {
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let scores = cross.scores_of(&cross.predict_pairs(&refs)?);
    Ok(scores.values().to_vec())
}

fn score(set: &Labelled, bi: &BiEncoder, cross: &CrossEncoder) -> Result<Scored> {
    Ok(Scored {
        cosine: cosines(bi, &set.pairs)?,
        cross: cross_scores(cross, &set.pairs)?,
        labels: set.labels.clone(),
    })
}

/// (precision, recall, F1) of the decisions.
fn prf(decisions: impl Iterator<Item = bool>, labels: &[bool]) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (d, &l) in decisions.zip(labels) {
        match (d, l) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let r = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    (
        p,
        r,
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        },
    )
}

fn grid(from: f32, to: f32, step: f32) -> Vec<f32> {
    (0..)
        .map(|i| from + step * i as f32)
        .take_while(|x| *x <= to + 1e-6)
        .collect()
}

fn dedupe_table(train: &Scored, val: &Scored) {
    let decide = |s: &Scored, c: f32, t: f32| {
        (0..s.labels.len())
            .map(move |i| s.cosine[i] >= c && s.cross[i] >= t)
            .collect::<Vec<_>>()
    };
    let best = |candidates: Vec<(f32, f32)>| {
        candidates
            .into_iter()
            .map(|(c, t)| {
                (
                    (c, t),
                    prf(decide(train, c, t).into_iter(), &train.labels).2,
                )
            })
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .map(|x| x.0)
            .unwrap_or((0.0, 0.0))
    };
    let thresholds = grid(0.0, 0.99, 0.01);
    let bi_only = best(thresholds.iter().map(|&c| (c, f32::NEG_INFINITY)).collect());
    let cross_only = best(thresholds.iter().map(|&t| (f32::NEG_INFINITY, t)).collect());
    let two_stage = best(
        grid(0.3, 0.95, 0.05)
            .into_iter()
            .flat_map(|c| thresholds.iter().map(move |&t| (c, t)))
            .collect(),
    );
    println!(
        "Dedupe decisions on MSRP (thresholds chosen on train, {} pairs; reported on validation, {} pairs)\n",
        train.labels.len(),
        val.labels.len()
    );
    println!(
        "| method | thresholds (from train) | precision | recall | F1 |\n|---|---|---:|---:|---:|"
    );
    for (name, (c, t)) in [
        ("bi-encoder cosine only", bi_only),
        ("cross-encoder only", cross_only),
        (
            "bi-encoder candidates + cross-encoder verification",
            two_stage,
        ),
    ] {
        let (p, r, f) = prf(decide(val, c, t).into_iter(), &val.labels);
        let shown = |x: f32| {
            if x.is_finite() {
                format!("{x:.2}")
            } else {
                "–".into()
            }
        };
        println!(
            "| {name} | cosine ≥ {}, cross ≥ {} | {p:.3} | {r:.3} | {f:.3} |",
            shown(c),
            shown(t)
        );
    }
    println!();
}

/// Per question: (scores of each method, relevance labels).
struct Ranking {
    first: Vec<f32>,
    cross: Vec<f32>,
    relevant: Vec<bool>,
}

fn rankings(path: &Path, bi: &BiEncoder, cross: &CrossEncoder) -> Result<Vec<Ranking>> {
    let rows = datasets::trecqa(path)?;
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|(q, a, _)| (q.clone(), a.clone()))
        .collect();
    let (cos, ce) = (cosines(bi, &pairs)?, cross_scores(cross, &pairs)?);
    let mut by_question: BTreeMap<&str, Ranking> = BTreeMap::new();
    for (i, (q, _, relevant)) in rows.iter().enumerate() {
        let r = by_question.entry(q.as_str()).or_insert(Ranking {
            first: vec![],
            cross: vec![],
            relevant: vec![],
        });
        r.first.push(cos[i]);
        r.cross.push(ce[i]);
        r.relevant.push(*relevant);
    }
    Ok(by_question
        .into_values()
        .filter(|r| r.relevant.iter().any(|&x| x))
        .collect())
}

/// How one method scores a question's candidates.
type RankingScores = Box<dyn Fn(&Ranking) -> Vec<f32>>;

/// (MAP, MRR) of rankings by `scores(r)`.
fn map_mrr(rankings: &[Ranking], scores: impl Fn(&Ranking) -> Vec<f32>) -> (f64, f64) {
    let (mut map, mut mrr) = (0.0, 0.0);
    for r in rankings {
        let s = scores(r);
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
        let (mut hits, mut precision_sum, mut first) = (0.0, 0.0, None);
        for (rank, &i) in order.iter().enumerate() {
            if r.relevant[i] {
                hits += 1.0;
                precision_sum += hits / (rank + 1) as f64;
                first.get_or_insert(rank + 1);
            }
        }
        map += precision_sum / hits;
        mrr += 1.0 / first.unwrap_or(usize::MAX) as f64;
    }
    (map / rankings.len() as f64, mrr / rankings.len() as f64)
}

fn min_max(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    v.iter()
        .map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 })
        .collect()
}

fn fused(w: f32) -> impl Fn(&Ranking) -> Vec<f32> {
    move |r| {
        min_max(&r.first)
            .iter()
            .zip(min_max(&r.cross))
            .map(|(f, c)| (1.0 - w) * f + w * c)
            .collect()
    }
}

fn rerank_table(data: &Path, bi: &BiEncoder, cross: &CrossEncoder) -> Result<()> {
    let train = rankings(&data.join("trecqa-wang/train.csv"), bi, cross)?;
    let dev = rankings(&data.join("trecqa-wang/dev.csv"), bi, cross)?;
    let weight = grid(0.0, 1.0, 0.05)
        .into_iter()
        .max_by(|&x, &y| {
            map_mrr(&train, fused(x))
                .0
                .total_cmp(&map_mrr(&train, fused(y)).0)
        })
        .unwrap_or(0.5);
    println!(
        "Re-ranking TREC-QA answer candidates (dev: {} questions with a relevant answer; fusion weight chosen on train)\n",
        dev.len()
    );
    println!("| ranking | MAP | MRR |\n|---|---:|---:|");
    let rows: [(String, RankingScores); 3] = [
        (
            "first stage: bi-encoder cosine".into(),
            Box::new(|r: &Ranking| r.first.clone()),
        ),
        (
            "cross-encoder re-rank".into(),
            Box::new(|r: &Ranking| r.cross.clone()),
        ),
        (
            format!(
                "fusion: {:.2} × cross + {:.2} × bi (min-max per question)",
                weight,
                1.0 - weight
            ),
            Box::new(fused(weight)),
        ),
    ];
    for (name, f) in rows {
        let (map, mrr) = map_mrr(&dev, f);
        println!("| {name} | {map:.3} | {mrr:.3} |");
    }
    Ok(())
}
