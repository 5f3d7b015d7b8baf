//! Fixed, real pair sets from ../shared/data at three length profiles.
//!
//! - `short`: STS Benchmark train + dev sentence pairs (~30 tokens a pair).
//! - `medium`: MSRP paraphrase pairs, then TREC-QA question/answer pairs (~60 tokens).
//! - `long`: TREC-QA questions against passages of consecutive candidate
//!   answers (~256 tokens, truncated to the model's limit).
//!
//! Pairs are de-duplicated so that the engine's in-batch de-duplication cannot
//! flatter it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// One benchmark pair set.
#[derive(Debug, Clone)]
pub struct PairSet {
    /// Profile name.
    pub name: String,
    /// The pairs, unique.
    pub pairs: Vec<(String, String)>,
}

/// Loads `profile` (short, medium, long) with at most `limit` pairs, from
/// the data folder, or from a pairs file (`crossflow-bench export-pairs`:
/// JSON, profile → `[[a, b], ...]`) where `data` is a file.
pub fn load(profile: &str, data: &Path, limit: usize) -> Result<PairSet> {
    if data.is_file() {
        return from_file(profile, data, limit);
    }
    let raw = match profile {
        "short" => [
            sts(&data.join("stsbenchmark/sts-train.csv"))?,
            sts(&data.join("stsbenchmark/sts-dev.csv"))?,
        ]
        .concat(),
        "medium" => {
            let msrp = [
                msrp(&data.join("msrp/msr-para-train.tsv"))?,
                msrp(&data.join("msrp/msr-para-val.tsv"))?,
            ]
            .concat();
            [
                msrp,
                trecqa(&data.join("trecqa-wang/train.csv"))?
                    .into_iter()
                    .map(|(q, a, _)| (q, a))
                    .collect(),
            ]
            .concat()
        }
        "long" => [
            trecqa_passages(&data.join("trecqa-wang/train.csv"), 200)?,
            trecqa_passages(&data.join("trecqa-wang/dev.csv"), 200)?,
        ]
        .concat(),
        other => bail!("unknown profile {other:?} (expected short, medium or long)"),
    };
    let mut seen = HashSet::new();
    let pairs: Vec<_> = raw
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .take(limit)
        .collect();
    ensure!(
        !pairs.is_empty(),
        "profile {profile}: no pairs found under {}",
        data.display()
    );
    Ok(PairSet {
        name: profile.to_string(),
        pairs,
    })
}

/// A profile of a pairs file.
fn from_file(profile: &str, path: &Path, limit: usize) -> Result<PairSet> {
    let mut sets: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&read(path)?)
        .with_context(|| format!("{}: not a pairs file", path.display()))?;
    let mut pairs = sets
        .remove(profile)
        .with_context(|| format!("{} has no profile {profile:?}", path.display()))?;
    pairs.truncate(limit);
    Ok(PairSet {
        name: profile.to_string(),
        pairs,
    })
}

fn read(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim_start_matches('\u{feff}').to_string())
}

/// STS-B: tab-separated, no header; columns 5 and 6 are the sentences.
fn sts(path: &Path) -> Result<Vec<(String, String)>> {
    read(path)?
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let cols: Vec<&str> = line.split('\t').collect();
            ensure!(
                cols.len() >= 7,
                "{}:{}: expected at least 7 tab-separated columns",
                path.display(),
                n + 1
            );
            Ok((cols[5].to_string(), cols[6].to_string()))
        })
        .collect()
}

/// MSRP: tab-separated with a header `Quality, #1 ID, #2 ID, #1 String, #2 String`.
fn msrp(path: &Path) -> Result<Vec<(String, String)>> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    ensure!(
        header.starts_with("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"),
        "{}: unexpected header {header:?}",
        path.display()
    );
    lines
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            ensure!(
                cols.len() == 5,
                "{}: expected 5 columns in {line:?}",
                path.display()
            );
            Ok((cols[3].to_string(), cols[4].to_string()))
        })
        .collect()
}

/// TREC-QA: CSV with header `qtext,label,atext` → (question, answer, label).
pub fn trecqa(path: &Path) -> Result<Vec<(String, String, bool)>> {
    let text = read(path)?;
    let mut records = csv_records(&text).into_iter();
    let header = records.next().unwrap_or_default();
    ensure!(
        header == ["qtext", "label", "atext"],
        "{}: unexpected header {header:?}",
        path.display()
    );
    records
        .map(|r| {
            ensure!(
                r.len() == 3,
                "{}: expected 3 fields in {r:?}",
                path.display()
            );
            Ok((r[0].clone(), r[2].clone(), r[1] == "1"))
        })
        .collect()
}

/// For each candidate answer, a passage of it and the candidates after it
/// (cyclically, same question) up to `words` words.
fn trecqa_passages(path: &Path, words: usize) -> Result<Vec<(String, String)>> {
    let mut by_question: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (q, a, _) in trecqa(path)? {
        by_question.entry(q).or_default().push(a);
    }
    let mut pairs = Vec::new();
    for (question, answers) in by_question {
        for start in 0..answers.len() {
            let mut passage: Vec<&str> = Vec::new();
            for k in 0..answers.len() {
                if passage.len() >= words {
                    break;
                }
                passage.extend(answers[(start + k) % answers.len()].split_whitespace());
            }
            passage.truncate(words);
            pairs.push((question.clone(), passage.join(" ")));
        }
    }
    Ok(pairs)
}

/// A small RFC 4180 reader: quoted fields, doubled quotes, newlines in quotes.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_commas_and_doubled_quotes() {
        let records = csv_records("a,b\n\"x, y\",\"say \"\"hi\"\"\"\n");
        assert_eq!(records, [vec!["a", "b"], vec!["x, y", "say \"hi\""]]);
    }
}
