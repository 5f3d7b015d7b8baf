//! [`StartOnce`]: the running part of a model (its sessions and workers),
//! started on first use by whichever thread asks first, exactly once.

use std::sync::{Mutex, OnceLock};

use crate::Result;

/// A value started at most once; a start that fails is not kept, so a later
/// call tries again.
#[derive(Debug)]
pub(crate) struct StartOnce<T> {
    value: OnceLock<T>,
    /// Held while the value starts, so that it starts once.
    starting: Mutex<()>,
}

impl<T> Default for StartOnce<T> {
    fn default() -> Self {
        Self {
            value: OnceLock::new(),
            starting: Mutex::new(()),
        }
    }
}

impl<T> StartOnce<T> {
    /// The value, if it has started.
    pub fn get(&self) -> Option<&T> {
        self.value.get()
    }

    /// The value, started with `start` by the first caller; the others wait.
    pub fn get_or_start(&self, start: impl FnOnce() -> Result<T>) -> Result<&T> {
        if let Some(value) = self.value.get() {
            return Ok(value);
        }
        let _starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = self.value.get() {
            return Ok(value);
        }
        let value = start()?;
        Ok(self.value.get_or_init(|| value))
    }
}
