//! The results table, as markdown and as CSV, from one row formatter. Both
//! record the CPU the run was made on (int8 speed and scores depend on it).

use std::io::Write;

use anyhow::Result;
use crossflow::CpuInfo;

use crate::measure::Measurement;

/// One result line: a measurement and how it compares with the baselines.
pub struct Row {
    pub profile: String,
    pub vs_loop: Option<f64>,
    pub vs_st: Option<f64>,
    pub m: Measurement,
}

const COLUMNS: [(&str, &str); 10] = [
    ("profile", "profile"),
    ("system", "system"),
    ("pairs", "pairs"),
    ("seconds", "seconds"),
    ("pairs/s", "pairs_per_s"),
    ("tokens/s", "tokens_per_s"),
    ("padding %", "padding_pct"),
    ("peak RSS MB", "peak_rss_mb"),
    ("vs Python loop", "vs_python_loop"),
    ("vs sentence-transformers", "vs_sentence_transformers"),
];

impl Row {
    fn cells(&self) -> [String; COLUMNS.len()] {
        let m = &self.m;
        let ratio = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{r:.2}"));
        [
            self.profile.clone(),
            m.system.clone(),
            m.pairs.to_string(),
            format!("{:.3}", m.seconds),
            format!("{:.1}", m.pairs_per_s),
            format!("{:.0}", m.tokens as f64 / m.seconds),
            format!("{:.1}", padding_pct(m)),
            format!("{:.0}", m.peak_rss_mb),
            ratio(self.vs_loop),
            ratio(self.vs_st),
        ]
    }
}

fn padding_pct(m: &Measurement) -> f64 {
    100.0 * (m.padded_tokens.saturating_sub(m.tokens)) as f64 / m.padded_tokens.max(1) as f64
}

/// The rows as a markdown table, after a line naming the CPU.
pub fn write_markdown(rows: &[Row], out: &mut dyn Write) -> Result<()> {
    writeln!(out, "CPU: {}\n", CpuInfo::host())?;
    let header: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    writeln!(out, "| {} |", header.join(" | "))?;
    writeln!(out, "|---|---|{}", "---:|".repeat(COLUMNS.len() - 2))?;
    for row in rows {
        writeln!(out, "| {} |", row.cells().join(" | "))?;
    }
    Ok(())
}

/// The rows as CSV (the column names in snake case), the CPU in a last column.
pub fn write_csv(rows: &[Row], out: &mut dyn Write) -> Result<()> {
    let header: Vec<&str> = COLUMNS.iter().map(|c| c.1).collect();
    writeln!(out, "{},cpu", header.join(","))?;
    let cpu = quoted(&CpuInfo::host().to_string());
    for row in rows {
        let mut cells = row.cells();
        cells[1] = quoted(&cells[1]);
        writeln!(out, "{},{cpu}", cells.join(","))?;
    }
    Ok(())
}

/// A CSV field in double quotes.
fn quoted(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}
