//! How a call's rows come back from the workers: each batch's worker copies
//! the call's rows into the call's buffer, and the last rows (or the first
//! error) complete a oneshot the caller awaits (after text-embeddings-inference,
//! `core/src/infer.rs`, where every request is answered on a oneshot).

use std::sync::{Arc, Mutex};

use futures::channel::oneshot;

use crate::{Error, Result};

/// The answer of one call, filled batch by batch.
pub(crate) struct Reply {
    filling: Mutex<Option<Filling>>,
}

struct Filling {
    out: Vec<f32>,
    width: usize,
    /// Rows not answered yet.
    missing: usize,
    done: oneshot::Sender<Result<Vec<f32>>>,
}

/// Where a call's rows go: shared by the call's pending pairs.
pub(crate) type ReplyTo = Arc<Reply>;

impl Reply {
    /// A reply for `rows` rows of `width` floats, and the receiver that
    /// completes with all of them in row order, or with the first error.
    pub fn new(rows: usize, width: usize) -> (ReplyTo, oneshot::Receiver<Result<Vec<f32>>>) {
        let (done, receiver) = oneshot::channel();
        let filling = Filling {
            out: vec![0.0; rows * width],
            width,
            missing: rows,
            done,
        };
        let reply = Reply {
            filling: Mutex::new(Some(filling)),
        };
        (Arc::new(reply), receiver)
    }

    /// Delivers `values` (`width` floats per row) for the call's `rows`, or
    /// an error that ends the call. A call already ended (by an earlier error,
    /// or by its caller giving up) ignores what comes after.
    pub fn deliver(&self, rows: &[usize], values: Result<&[f32]>) {
        let mut guard = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        let Some(filling) = guard.as_mut() else {
            return;
        };
        let copied = values.and_then(|values| filling.copy(rows, values));
        match copied {
            Err(error) => {
                let filling = guard.take().expect("checked above");
                let _ = filling.done.send(Err(error));
            }
            Ok(()) if filling.missing == 0 => {
                let filling = guard.take().expect("checked above");
                let _ = filling.done.send(Ok(filling.out));
            }
            Ok(()) => {}
        }
    }
}

impl Filling {
    fn copy(&mut self, rows: &[usize], values: &[f32]) -> Result<()> {
        let width = self.width;
        if values.len() != rows.len() * width || rows.len() > self.missing {
            return Err(Error::Scheduler(format!(
                "a batch gave {} values for {} rows of {width} ({} rows missing)",
                values.len(),
                rows.len(),
                self.missing
            )));
        }
        for (&row, value) in rows.iter().zip(values.chunks(width.max(1))) {
            self.out[row * width..(row + 1) * width].copy_from_slice(value);
        }
        self.missing -= rows.len();
        Ok(())
    }
}
