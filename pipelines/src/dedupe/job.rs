//! The dedupe job: read, group exact duplicates, embed, find candidates,
//! verify, cluster, write.

use super::args::{DedupeArgs, DedupeSummary, Search};
use super::candidates::{Candidate, exact_top_k};
use super::clusters::{Clusters, Linkage, centre_clusters, centre_order};
use super::input::{Groups, Rows, TextColumn, exact_groups, group_of, read_rows};
use super::ivf::{IvfShape, ivf_top_k};
use super::output::{write_output, write_pairs};
use super::verify::Verifier;
use crate::blocking::run_blocking;
use crate::embedding::embed;
use crate::models::ModelArgs;
use crate::output_file::{FlagPath, OutputFile, check_paths};
use crate::progress::{Laps, PairProgress};
use crate::{JobError, Result};

/// Per row: the representative row of its cluster, the row it matches
/// directly (an exact copy or the centre) and that match's score.
pub(super) struct Assignment {
    pub cluster: Vec<usize>,
    pub duplicate_of: Vec<Option<usize>>,
    pub score: Vec<Option<f32>>,
}

/// Runs the job, here or, with `--scheduler`, on a cluster.
pub async fn run(args: &DedupeArgs, models: &ModelArgs) -> Result<DedupeSummary> {
    check_arguments(args)?;
    if args.search == Search::Hnsw || args.hnsw_ef.is_some() {
        tracing::warn!(
            "--search hnsw and --hnsw-ef are deprecated: the search runs ivf (--search ivf, \
             tuned with --ivf-lists and --ivf-probes), as fast or faster at equal or better recall"
        );
    }
    if models.overrides_activation() {
        tracing::warn!(activation = ?models.activation,
            "dedupe scores with the model's own activation; --activation is ignored");
    }
    let on_cluster = args.cluster.scheduler.is_some();
    // The verifier first: a threshold off its scale is refused before any
    // work. A cluster's client only opens the model: the executors run it.
    let model = if on_cluster {
        models.open_score_model_as_configured()?
    } else {
        models.load_score_model_as_configured()?
    };
    let verifier = Verifier::new(
        model,
        args.duplicate_label.as_deref(),
        args.threshold,
        args.direction,
    )?;
    let mut stages = Stages::default();
    let rows = read_input(args).await?;
    stages.summary.rows = rows.len();
    stages.lap("read");
    if on_cluster {
        return super::cluster::run(args, models, rows, verifier, stages).await;
    }
    // The rest is work for the CPU and the models: off the async threads.
    let (args, models) = (args.clone(), models.clone());
    run_blocking("dedupe", move || {
        let local = Local {
            args: &args,
            models: &models,
            verifier: &verifier,
        };
        dedupe_rows(&args, &rows, &local, stages)
    })
    .await
}

/// Reads `--input` in one partition: rows in file order (the order
/// --representative first means).
async fn read_input(args: &DedupeArgs) -> Result<Rows> {
    read_rows(&crate::sql::file_order_session(), args).await
}

/// The summary and the time of each stage so far.
#[derive(Default)]
pub(super) struct Stages {
    pub summary: DedupeSummary,
    laps: Laps,
}

impl Stages {
    /// Ends `stage`, which took the time since the last one ended.
    pub fn lap(&mut self, stage: &'static str) {
        self.laps.lap(stage);
    }

    /// The summary with the time of each stage.
    fn finished(self) -> DedupeSummary {
        DedupeSummary {
            stage_seconds: self.laps.stages,
            ..self.summary
        }
    }
}

/// Where a job embeds, searches candidates and scores pairs: in this
/// process ([`Local`]) or on a cluster's executors.
pub(super) trait Work {
    /// The unit vectors of `texts`, row-major.
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>>;
    /// Candidate pairs among `n` distinct texts (indexes into them) from
    /// their `vectors`.
    fn neighbours(&self, vectors: Vec<f32>, n: usize) -> Result<Vec<Candidate>>;
    /// The verifier's score of each pair of texts.
    fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>>;
}

/// The job's work in this process.
struct Local<'a> {
    args: &'a DedupeArgs,
    models: &'a ModelArgs,
    verifier: &'a Verifier,
}

impl Work for Local<'_> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let bi_encoder = self
            .models
            .load_bi_encoder(self.args.bi_encoder.as_deref())?;
        embed(&bi_encoder, texts)
    }

    fn neighbours(&self, vectors: Vec<f32>, n: usize) -> Result<Vec<Candidate>> {
        let args = self.args;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let valid = vec![true; n];
        let dim = (vectors.len() / n.max(1)).max(1);
        let (k, min) = (args.top_k, args.min_cosine);
        Ok(match chosen_search(args, n) {
            Search::Ivf => {
                let shape = ivf_shape(args, n);
                ivf_top_k(vectors, dim, &valid, k, min, shape, threads)
            }
            Search::Exact | Search::Auto | Search::Hnsw => {
                exact_top_k(&vectors, dim, &valid, k, min, threads)
            }
        })
    }

    fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        self.verifier.score_pairs(pairs)
    }
}

/// Groups, embeds, searches, verifies, clusters and writes the rows read,
/// the model work and the search done by `work`.
pub(super) fn dedupe_rows(
    args: &DedupeArgs,
    rows: &Rows,
    work: &impl Work,
    mut stages: Stages,
) -> Result<DedupeSummary> {
    let texts = rows.texts()?;
    let groups = exact_stage(args, rows, &texts, &mut stages);
    let heads: Vec<&str> = groups.head.iter().map(|&r| texts.text(r)).collect();
    let vectors = work.embed(&heads)?;
    stages.lap("embed");

    let found = rows_of(work.neighbours(vectors, heads.len())?, &groups.head);
    stages.summary.candidates = found.len();
    stages.lap("candidates");

    let linked = verify_and_link(args, &texts, &groups, &found, |pairs| work.score(pairs))?;
    finish(args, rows, &groups, &found, linked, stages)
}

/// Groups rows of equal text (the exact duplicates).
fn exact_stage(args: &DedupeArgs, rows: &Rows, texts: &TextColumn, stages: &mut Stages) -> Groups {
    let groups = exact_groups(texts, rows.len(), args.representative);
    let present = (0..rows.len()).filter(|&r| texts.get(r).is_some()).count();
    stages.summary.exact_duplicates = present - groups.head.len();
    stages.lap("exact");
    groups
}

/// Counts what the linkage scored and verified, then assigns and writes
/// every row (and the pairs, with --pairs-output).
fn finish(
    args: &DedupeArgs,
    rows: &Rows,
    groups: &Groups,
    found: &[Candidate],
    (clusters, cross_scores): (Clusters, Vec<Option<f32>>),
    mut stages: Stages,
) -> Result<DedupeSummary> {
    let summary = &mut stages.summary;
    summary.scored = cross_scores.iter().flatten().count();
    summary.verified = cross_scores
        .iter()
        .flatten()
        .filter(|&&s| s >= args.threshold)
        .count();
    warn_capped(&clusters, groups, rows, args.max_cluster_size);
    summary.capped_clusters = clusters.capped.len();
    stages.lap("verify");

    let assignment = assign(groups, &clusters);
    let summary = &mut stages.summary;
    summary.clusters = (0..rows.len())
        .filter(|&r| assignment.cluster[r] == r)
        .count();
    summary.duplicates = summary.rows - summary.clusters;
    let output = write_output(args, rows, &assignment)?;
    let mut outputs = vec![output];
    if let Some(path) = &args.pairs_output {
        outputs.push(write_pairs(
            path,
            rows,
            found,
            &cross_scores,
            args.threshold,
        )?);
    }
    OutputFile::commit_all(outputs)?;
    stages.lap("write");
    Ok(stages.finished())
}

/// Refuses outputs that clash with the input or each other, and thresholds
/// outside their scale, before anything is read.
pub(super) fn check_arguments(args: &DedupeArgs) -> Result<()> {
    let mut outputs = vec![FlagPath::new("--output", &args.output)];
    if let Some(pairs) = &args.pairs_output {
        outputs.push(FlagPath::new("--pairs-output", pairs));
    }
    check_paths(
        &[FlagPath::new("--input", std::path::Path::new(&args.input))],
        &outputs,
    )?;
    if !(-1.0..=1.0).contains(&args.min_cosine) {
        return Err(JobError::Usage(format!(
            "--min-cosine {}: expected a cosine in [-1, 1]",
            args.min_cosine
        )));
    }
    if args.top_k == 0 {
        return Err(JobError::Usage(
            "--top-k 0: expected at least 1 candidate per text".into(),
        ));
    }
    Ok(())
}

/// The search `--search` means for `distinct` texts: exact or IVF.
pub(super) fn chosen_search(args: &DedupeArgs, distinct: usize) -> Search {
    match args.search {
        Search::Auto if distinct <= args.exact_limit => Search::Exact,
        Search::Auto | Search::Hnsw => Search::Ivf,
        chosen => chosen,
    }
}

/// The IVF shape of the flags for `distinct` texts (logged).
pub(super) fn ivf_shape(args: &DedupeArgs, distinct: usize) -> IvfShape {
    let lists = args.ivf_lists.map(|l| l as usize);
    let shape = IvfShape::for_rows(distinct, lists, args.ivf_probes as usize);
    tracing::info!(
        lists = shape.lists,
        probes = shape.probes,
        "IVF candidate search"
    );
    shape
}

/// Candidates between distinct texts as candidates between their rows.
fn rows_of(neighbours: Vec<Candidate>, unique: &[usize]) -> Vec<Candidate> {
    neighbours
        .into_iter()
        .map(|c| Candidate {
            a: unique[c.a],
            b: unique[c.b],
            ..c
        })
        .collect()
}

/// Pairs scored per call of the cross-encoder while linking: small enough
/// that pairs whose groups were clustered meanwhile are skipped, large enough
/// to keep every session busy.
const VERIFY_WINDOW: usize = 2048;

/// Centre linkage of the distinct texts, scoring candidate pairs with
/// `score` (texts of pairs in, one score each out), [`VERIFY_WINDOW`] pairs
/// at most per call, as the linkage needs them. Returns the clusters and each
/// candidate's score (`None`: not needed).
fn verify_and_link(
    args: &DedupeArgs,
    texts: &TextColumn,
    groups: &Groups,
    found: &[Candidate],
    mut score: impl FnMut(&[(&str, &str)]) -> Result<Vec<f32>>,
) -> Result<(Clusters, Vec<Option<f32>>)> {
    let pairs: Vec<(usize, usize)> = found
        .iter()
        .map(|c| (group_of(groups, c.a), group_of(groups, c.b)))
        .collect();
    let lengths: Vec<usize> = groups
        .head
        .iter()
        .map(|&r| texts.text(r).chars().count())
        .collect();
    let order = centre_order(&groups.head, &lengths, args.representative);
    let linkage = Linkage {
        threshold: args.threshold,
        max_rows: args.max_cluster_size.map(|m| m as usize),
        window: VERIFY_WINDOW,
    };
    // No total: pairs that cannot change a cluster are never scored.
    let progress = PairProgress::new(None, "verifying");
    let linked = centre_clusters(&groups.sizes, &pairs, &order, linkage, |wanted| {
        let texts: Vec<(&str, &str)> = wanted
            .iter()
            .map(|&p| (texts.text(found[p].a), texts.text(found[p].b)))
            .collect();
        let scores = score(&texts)?;
        progress.inc(wanted.len() as u64);
        Ok(scores)
    });
    progress.finish();
    linked
}

/// Cluster, match and score of every row from the clusters of its group.
fn assign(groups: &Groups, clusters: &Clusters) -> Assignment {
    let n = groups.of_row.len();
    let mut assignment = Assignment {
        cluster: (0..n).collect(),
        duplicate_of: vec![None; n],
        score: vec![None; n],
    };
    for (row, group) in groups.of_row.iter().enumerate() {
        let Some(group) = *group else { continue };
        let centre = clusters.centre[group];
        let representative = groups.head[centre];
        let head = groups.head[group];
        assignment.cluster[row] = representative;
        if row != head {
            // An exact copy matches the head of its text's group.
            assignment.duplicate_of[row] = Some(head);
            assignment.score[row] = Some(1.0);
        } else if group != centre {
            assignment.duplicate_of[row] = Some(representative);
            assignment.score[row] = clusters.score[group];
        }
    }
    assignment
}

/// Names the clusters that reached --max-cluster-size.
fn warn_capped(clusters: &Clusters, groups: &Groups, rows: &Rows, max: Option<u64>) {
    if clusters.capped.is_empty() {
        return;
    }
    let names: Vec<String> = clusters
        .capped
        .iter()
        .take(20)
        .map(|&g| {
            let row = groups.head[g];
            rows.ids[row]
                .clone()
                .unwrap_or_else(|| format!("row {row}"))
        })
        .collect();
    tracing::warn!(
        "{} clusters reached --max-cluster-size {}; verified matches were left out of: {}{}",
        clusters.capped.len(),
        max.unwrap_or_default(),
        names.join(", "),
        if clusters.capped.len() > names.len() {
            ", ..."
        } else {
            ""
        }
    );
}
