//! The `crossflow index` and `crossflow search` jobs.

use std::path::Path;
use std::time::Instant;

use crossflow::BiEncoder;
use crossflow_udfs::ModelSet;
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use super::args::{IndexArgs, IndexSummary, SearchArgs, SearchSummary};
use super::build::build_index;
use super::first_stage::{Searching, query_candidates, rerank_of_candidates};
use super::index_dir::{CorpusIdentity, CorpusIndex, Manifest, check_out};
use super::table::{self, Columns, TextTable};
use crate::blocking::run_blocking;
use crate::models::ModelArgs;
use crate::output_file::{FlagPath, ScratchDir, check_paths};
use crate::progress::Laps;
use crate::rerank::write_top;
use crate::{JobError, Result};

/// `crossflow index`: embeds the corpus and writes the index directory.
pub async fn index(args: &IndexArgs, models: &ModelArgs) -> Result<IndexSummary> {
    let clock = Instant::now();
    check_paths(
        &[FlagPath::new("--corpus", Path::new(&args.corpus))],
        &[FlagPath::new("--out", &args.out)],
    )?;
    // Before hours of embedding: where the index goes.
    check_out(&args.out)?;
    let identity = CorpusIdentity::of(Path::new(&args.corpus))?;
    let columns = doc_columns(&args.doc_id_column, &args.doc_column);
    let docs = table::read(&args.corpus, columns).await?;
    let (args, models) = (args.clone(), models.clone());
    run_blocking("index", move || {
        let model = models.load_bi_encoder(args.bi_encoder.as_deref())?;
        let columns = doc_columns(&args.doc_id_column, &args.doc_column);
        let built = build_index(identity, &docs, columns, &model, args.ivf_lists)?;
        built.write(&args.out)?;
        Ok(IndexSummary {
            docs: built.manifest.docs,
            indexed: built.manifest.indexed,
            lists: built.manifest.lists,
            seconds: clock.elapsed().as_secs_f64(),
        })
    })
    .await
}

/// `crossflow search`: the top-k documents of each query by cosine,
/// re-ranked by the cross-encoder; writes the top-n of each.
pub async fn search(args: &SearchArgs, models: &ModelArgs) -> Result<SearchSummary> {
    check_numbers(args)?;
    let mut inputs = vec![FlagPath::new("--queries", Path::new(&args.queries))];
    if let Some(corpus) = &args.corpus {
        inputs.push(FlagPath::new("--corpus", Path::new(corpus)));
    }
    let indexed = match &args.index {
        Some(dir) => Some((dir.as_path(), Manifest::read(dir)?.corpus.path)),
        None => None,
    };
    if let Some((dir, corpus)) = &indexed {
        inputs.push(FlagPath::new("--index", dir));
        inputs.push(FlagPath::new("--index's corpus", corpus));
    }
    check_paths(&inputs, &[FlagPath::new("--output", &args.output)])?;
    let mut laps = Laps::default();
    let corpus = args.corpus.as_deref().map(Path::new);
    let (source, docs) = match (&args.index, corpus) {
        (Some(dir), _) => {
            let (index, docs) = open_indexed(dir, corpus).await?;
            (Source::Indexed(Box::new(index)), docs)
        }
        (None, Some(path)) => {
            let identity = CorpusIdentity::of(path)?;
            let columns = doc_columns(&args.doc_id_column, &args.doc_column);
            let docs = table::read(&path.display().to_string(), columns).await?;
            (Source::Corpus(identity), docs)
        }
        (None, None) => return Err(JobError::Usage("give --index or --corpus".into())),
    };
    let queries = table::read(
        &args.queries,
        Columns {
            id_flag: "--query-id-column",
            id: &args.query_id_column,
            text_flag: "--query-column",
            text: &args.query_column,
        },
    )
    .await?;
    laps.lap("read");
    let (batch, mut summary, mut laps) = {
        let (args, models) = (args.clone(), models.clone());
        run_blocking("search", move || {
            let model = models.load_bi_encoder(args.bi_encoder.as_deref())?;
            let index = match source {
                Source::Indexed(index) => {
                    check_bi_encoder(&index.manifest, &model, args.index.as_deref())?;
                    *index
                }
                Source::Corpus(identity) => {
                    let columns = doc_columns(&args.doc_id_column, &args.doc_column);
                    let built = build_index(identity, &docs, columns, &model, args.ivf_lists)?;
                    laps.lap("index");
                    built
                }
            };
            let (batch, summary) = first_stage(&args, &model, &index, &queries, &docs, &mut laps)?;
            Ok((batch, summary, laps))
        })
        .await?
    };
    summary.rows_written = rerank(args, models, batch).await?;
    laps.lap("rerank");
    summary.stage_seconds = laps.stages;
    Ok(summary)
}

/// The documents searched: an index built earlier, or a corpus to index now.
enum Source {
    Indexed(Box<CorpusIndex>),
    Corpus(CorpusIdentity),
}

/// Embeds the queries with a text and takes their candidates.
fn first_stage(
    args: &SearchArgs,
    model: &BiEncoder,
    index: &CorpusIndex,
    queries: &TextTable,
    docs: &TextTable,
    laps: &mut Laps,
) -> Result<(RecordBatch, SearchSummary)> {
    let searching = Searching {
        top_k: args.top_k,
        mode: args.search,
        probes: args.ivf_probes as usize,
    };
    let (batch, with_text) = query_candidates(model, index, (queries, docs), searching, laps)?;
    let summary = SearchSummary {
        queries: queries.len(),
        without_text: queries.len() - with_text,
        candidates: batch.num_rows(),
        ..SearchSummary::default()
    };
    Ok((batch, summary))
}

/// The second stage: the candidates re-ranked by the cross-encoder, here or
/// on the cluster, by `crossflow rerank`'s SQL; writes `--output` and
/// returns the number of rows written.
async fn rerank(args: &SearchArgs, models: &ModelArgs, batch: RecordBatch) -> Result<u64> {
    let rerank = rerank_of_candidates(
        args.output.clone(),
        args.top_n,
        args.fusion,
        args.cluster.clone(),
    );
    let on_cluster = args.cluster.scheduler.is_some();
    let score = match on_cluster {
        true => models.open_score_model()?,
        false => models.load_score_model()?,
    };
    let set = ModelSet {
        score,
        nli: None,
        bi: None,
    };
    let (ctx, _scratch) = match on_cluster {
        true => {
            let scratch = ScratchDir::beside(&args.output, "crossflow-search")?;
            let path = scratch.path().join("candidates.parquet");
            write_parquet(&batch, &path)?;
            let table = format!("candidates={}", path.display());
            (args.cluster.session(&set, &[table]).await?, Some(scratch))
        }
        false => {
            let ctx: SessionContext = crate::sql::session(&set, &[]).await?;
            ctx.register_batch("candidates", batch)?;
            (ctx, None)
        }
    };
    write_top(&ctx, &rerank).await
}

/// Writes `batch` to a new Parquet file at `path`.
fn write_parquet(batch: &RecordBatch, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| JobError::io(path.display(), e))?;
    let parquet = |source| JobError::Parquet {
        path: path.display().to_string(),
        source,
    };
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet)?;
    writer.write(batch).map_err(parquet)?;
    writer.close().map_err(parquet)?;
    Ok(())
}

/// `--top-k` and `--top-n` of at least 1, `--top-n` at most `--top-k`, and a
/// `--fusion` weight in [0, 1].
fn check_numbers(args: &SearchArgs) -> Result<()> {
    if args.top_k == 0 || args.top_n == 0 {
        return Err(JobError::Usage(format!(
            "--top-k {} --top-n {}: expected at least 1 of each",
            args.top_k, args.top_n
        )));
    }
    if args.top_n > args.top_k {
        return Err(JobError::Usage(format!(
            "--top-n {} above --top-k {}: only the --top-k candidates of a query are re-ranked",
            args.top_n, args.top_k
        )));
    }
    if !(0.0..=1.0).contains(&args.fusion) {
        return Err(JobError::Usage(format!(
            "--fusion {}: expected a weight in [0, 1] (1 ranks by the cross-encoder alone)",
            args.fusion
        )));
    }
    Ok(())
}

/// The corpus read must be the one indexed: same size and contents.
fn check_corpus(index: &CorpusIndex, found: &CorpusIdentity, dir: &Path) -> Result<()> {
    let indexed = &index.manifest.corpus;
    if indexed.same_contents(found) {
        return Ok(());
    }
    Err(JobError::InvalidData(format!(
        "--index {}: the corpus changed since it was indexed: {} had {} bytes (SHA-256 {}), \
         {} has {} bytes (SHA-256 {}); rebuild the index with `crossflow index --corpus {} --out {}`",
        dir.display(),
        indexed.path.display(),
        indexed.bytes,
        indexed.sha256,
        found.path.display(),
        found.bytes,
        found.sha256,
        found.path.display(),
        dir.display()
    )))
}

/// Opens the index in `dir` and reads its corpus (or `corpus`, which must
/// have the contents indexed).
pub(super) async fn open_indexed(
    dir: &Path,
    corpus: Option<&Path>,
) -> Result<(CorpusIndex, TextTable)> {
    // Reading the vectors and hashing the corpus: off the async threads.
    let (index, path) = crossflow_udfs::off_async_threads(|| {
        let index = CorpusIndex::open(dir)?;
        let path = corpus.unwrap_or(&index.manifest.corpus.path).to_path_buf();
        check_corpus(&index, &CorpusIdentity::of(&path)?, dir)?;
        Ok::<_, JobError>((index, path))
    })?;
    let columns = doc_columns(&index.manifest.doc_id_column, &index.manifest.doc_column);
    let docs = table::read(&path.display().to_string(), columns).await?;
    Ok((index, docs))
}

/// The queries must be embedded by the index's bi-encoder.
pub(super) fn check_bi_encoder(
    built: &Manifest,
    model: &BiEncoder,
    dir: Option<&Path>,
) -> Result<()> {
    if model.fingerprint().as_str() == built.bi_encoder_fingerprint {
        return Ok(());
    }
    Err(JobError::Usage(format!(
        "--index {}: built with bi-encoder {} (fingerprint {}), but the queries would be embedded \
         by {} (fingerprint {}): vectors of two models are not comparable; pass --bi-encoder {} \
         or rebuild the index with this one",
        dir.unwrap_or(Path::new("")).display(),
        built.bi_encoder,
        built.bi_encoder_fingerprint,
        model.name(),
        model.fingerprint().as_str(),
        built.bi_encoder,
    )))
}

/// The corpus columns, named by the flags that choose them.
pub(super) fn doc_columns<'a>(id: &'a str, text: &'a str) -> Columns<'a> {
    Columns {
        id_flag: "--doc-id-column",
        id,
        text_flag: "--doc-column",
        text,
    }
}
