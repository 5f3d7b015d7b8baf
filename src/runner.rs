//! Running planned micro-batches over the session pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::batching::MicroBatch;
use crate::session::{OrtModel, Output, PaddedBatch};
use crate::stats::Stats;
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

/// What to run and how to turn each batch's graph output into `width` floats per row.
pub(crate) struct Run<'a> {
    pub model: &'a OrtModel,
    pub encoded: &'a [EncodedPair],
    pub pad_id: u32,
    pub stats: &'a Stats,
    pub width: usize,
}

impl Run<'_> {
    /// Runs `batches` (longest first) on the pool's sessions in parallel;
    /// returns a row-major `encoded.len() × width` matrix in input order.
    /// `rows` maps one batch's output to its rows (`batch.len() × width`).
    pub fn all<F>(&self, batches: &[MicroBatch], rows: F) -> Result<Vec<f32>>
    where
        F: Fn(&MicroBatch, Output) -> Result<Vec<f32>> + Sync,
    {
        let width = self.width;
        let mut matrix = vec![0.0; self.encoded.len() * width];
        let mut store = |batch: &MicroBatch, out: Vec<f32>| {
            for (row, &i) in batch.indices.iter().enumerate() {
                matrix[i * width..(i + 1) * width]
                    .copy_from_slice(&out[row * width..(row + 1) * width]);
            }
        };
        let workers = self.model.workers().min(batches.len());
        if workers <= 1 {
            for batch in batches {
                store(batch, rows(batch, self.one(0, batch)?)?);
            }
            return Ok(matrix);
        }
        // A shared cursor over the longest-first plan keeps every session busy.
        let cursor = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel();
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (sender, cursor, rows) = (sender.clone(), &cursor, &rows);
                scope.spawn(move || {
                    while let Some(batch) = batches.get(cursor.fetch_add(1, Ordering::Relaxed)) {
                        let result = self.one(worker, batch).and_then(|out| rows(batch, out));
                        if sender.send((batch, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            for (batch, result) in receiver {
                store(batch, result?);
            }
            Ok::<_, Error>(())
        })?;
        Ok(matrix)
    }

    /// Pads and runs one micro-batch on session `worker`.
    fn one(&self, worker: usize, batch: &MicroBatch) -> Result<Output> {
        let members: Vec<_> = batch.indices.iter().map(|&i| &self.encoded[i]).collect();
        let padded = PaddedBatch::new(&members, batch.padded_length, self.pad_id);
        let started = Instant::now();
        let out = self.model.run(worker, &padded)?;
        let tokens = members.iter().map(|e| e.len()).sum();
        self.stats
            .record_batch(tokens, batch.padded_tokens(), started.elapsed());
        Ok(out)
    }
}
