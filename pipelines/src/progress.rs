//! Progress bars for long jobs: pairs done, pairs/s, ETA. Drawn on stderr
//! only when it is a terminal.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar counting pairs.
#[derive(Debug)]
pub struct PairProgress {
    bar: ProgressBar,
    started: Instant,
}

impl PairProgress {
    /// A bar over `total` pairs (a spinner when unknown).
    pub fn new(total: Option<u64>, what: &str) -> Self {
        Self::drawn(
            total,
            &format!(
                "{{spinner}} {what} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} pairs, {{per_sec}}, ETA {{eta}}"
            ),
        )
    }

    /// A bar over `total` tasks of a job on a cluster.
    pub fn tasks(total: u64, what: &str) -> Self {
        Self::drawn(
            Some(total),
            &format!(
                "{{spinner}} {what} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} tasks, ETA {{eta}}"
            ),
        )
    }

    /// A bar on stderr over `total` (a spinner when unknown) in `template`.
    fn drawn(total: Option<u64>, template: &str) -> Self {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// Adds `pairs` done.
    pub fn inc(&self, pairs: u64) {
        self.bar.inc(pairs);
    }

    /// Clears the bar; returns the elapsed time.
    pub fn finish(&self) -> Duration {
        self.bar.finish_and_clear();
        self.started.elapsed()
    }
}

/// The time of each stage of a job, stage after stage.
#[derive(Debug)]
pub struct Laps {
    clock: Instant,
    /// Each stage ended so far and its seconds.
    pub stages: Vec<(&'static str, f64)>,
}

impl Default for Laps {
    fn default() -> Self {
        Self {
            clock: Instant::now(),
            stages: Vec::new(),
        }
    }
}

impl Laps {
    /// Ends `stage`, which took the time since the last one ended.
    pub fn lap(&mut self, stage: &'static str) {
        self.stages
            .push((stage, self.clock.elapsed().as_secs_f64()));
        self.clock = Instant::now();
    }
}

/// Stage times as a summary line shows them: `read 0.12s, embed 3.40s`.
pub fn stage_times(stages: &[(&'static str, f64)]) -> String {
    let times: Vec<String> = stages.iter().map(|(s, t)| format!("{s} {t:.2}s")).collect();
    times.join(", ")
}
