//! Outputs that appear whole or not at all.
//!
//! Every job that writes files writes under a temporary name in the target's
//! directory and renames it over the target only once the job succeeded. A
//! failed or interrupted job removes what it wrote (on drop, or from the
//! signal handler through [`remove_pending_and_exit`]), so an existing target is never
//! replaced by a partial file. [`check_paths`] refuses, before anything is
//! opened, an output that is one of the job's inputs or another output.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::{TempDir, TempPath};

use crate::{JobError, Result};

/// Temporary files and directories not yet renamed into place.
static PENDING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Held while outputs are moved into place, and by [`remove_pending_and_exit`]:
/// a signal never interrupts a commit, and no commit follows a signal.
static COMMITS: Mutex<()> = Mutex::new(());

fn commits() -> std::sync::MutexGuard<'static, ()> {
    COMMITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pending() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary output not yet renamed into place and ends the
/// process with `code`: for a signal handler. Waits for a commit in progress.
pub fn remove_pending_and_exit(code: i32) -> ! {
    let _commits = commits();
    remove_pending();
    eprintln!("interrupted: outputs not written");
    std::process::exit(code);
}

/// Removes every temporary output not yet renamed into place.
fn remove_pending() {
    for path in std::mem::take(&mut *pending()) {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "could not remove a temporary output");
        }
    }
}

/// A temporary output's place in the pending set, for as long as it lives.
#[derive(Debug)]
struct Registration(PathBuf);

impl Registration {
    fn new(path: &Path) -> Self {
        pending().insert(path.to_path_buf());
        Self(path.to_path_buf())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        pending().remove(&self.0);
    }
}

/// A file being written under a temporary name beside its target.
#[derive(Debug)]
pub struct OutputFile {
    temp: TempPath,
    target: PathBuf,
    registration: Registration,
}

impl OutputFile {
    /// Creates the temporary file beside `target` (links resolved) and opens it for writing.
    pub fn create(target: &Path) -> Result<(Self, File)> {
        let target = resolved(target);
        let (dir, name) = split(&target)?;
        // Created as a plain file would be (0666 less the umask), not 0600.
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".crossflow-tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| JobError::io(target.display(), e))?;
        let (file, temp) = file.into_parts();
        let registration = Registration::new(&temp);
        Ok((
            Self {
                temp,
                target,
                registration,
            },
            file,
        ))
    }

    /// Renames the finished file over the target.
    pub fn commit(self) -> Result<()> {
        Self::commit_all(vec![self])
    }

    /// Renames finished files over their targets, all before a signal is
    /// handled or none.
    pub fn commit_all(outputs: Vec<Self>) -> Result<()> {
        let _commits = commits();
        outputs.into_iter().try_for_each(Self::rename)
    }

    fn rename(self) -> Result<()> {
        drop(self.registration);
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| JobError::io(target.display(), e.error))
    }
}

/// A `COPY ... TO` target staged in a temporary directory beside it: the
/// statement writes [`staged`](Self::staged) (a file, or a directory of
/// files), which [`commit`](Self::commit) moves into place.
#[derive(Debug)]
pub struct StagedOutput {
    temp: TempDir,
    name: std::ffi::OsString,
    target: PathBuf,
    registration: Registration,
}

impl StagedOutput {
    /// Creates the temporary directory beside `target` (links resolved).
    pub fn create(target: &Path) -> Result<Self> {
        let target = resolved(target);
        let (dir, name) = split(&target)?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".crossflow-tmp")
            .tempdir_in(dir)
            .map_err(|e| JobError::io(target.display(), e))?;
        Ok(Self {
            name: name.into(),
            registration: Registration::new(temp.path()),
            temp,
            target,
        })
    }

    /// Where the statement writes until [`commit`](Self::commit).
    pub fn staged(&self) -> PathBuf {
        self.temp.path().join(&self.name)
    }

    /// Renames a written file over the target, or moves a written directory's
    /// files into the target directory (created if missing, sub-directories
    /// such as Hive partitions kept); nothing written leaves the target as it is.
    pub fn commit(self) -> Result<()> {
        let _commits = commits();
        let staged = self.staged();
        if staged.is_dir() {
            move_tree(&staged, &self.target)?;
        } else if staged.exists() {
            std::fs::rename(&staged, &self.target)
                .map_err(|e| JobError::io(self.target.display(), e))?;
        }
        drop(self.registration);
        self.temp
            .close()
            .map_err(|e| JobError::io(self.target.display(), e))
    }
}

fn move_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| JobError::io(to.display(), e))?;
    for entry in std::fs::read_dir(from).map_err(|e| JobError::io(from.display(), e))? {
        let entry = entry.map_err(|e| JobError::io(from.display(), e))?;
        let destination = to.join(entry.file_name());
        if entry.path().is_dir() {
            move_tree(&entry.path(), &destination)?;
        } else {
            std::fs::rename(entry.path(), &destination)
                .map_err(|e| JobError::io(destination.display(), e))?;
        }
    }
    Ok(())
}

/// The directory and file name of a target path.
fn split(target: &Path) -> Result<(&Path, String)> {
    let name = target
        .file_name()
        .ok_or_else(|| JobError::Usage(format!("{}: not a file name", target.display())))?
        .to_string_lossy()
        .into_owned();
    Ok((directory_of(target), name))
}

/// The directory a path names a file in (`.` for a bare name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `path` with its links resolved: the file itself when it exists, else its
/// resolved directory and its name (as given when even that is missing).
fn resolved(path: &Path) -> PathBuf {
    resolved_within(path, 40)
}

/// [`resolved`], following at most `links` links to a missing file.
fn resolved_within(path: &Path, links: usize) -> PathBuf {
    if let Ok(path) = path.canonicalize() {
        return path;
    }
    if let (Ok(link), true) = (std::fs::read_link(path), links > 0) {
        let dir = path.parent().unwrap_or(Path::new(""));
        return resolved_within(&dir.join(link), links - 1);
    }
    match path.file_name() {
        Some(name) => directory_of(path)
            .canonicalize()
            .map(|dir| dir.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        None => path.to_path_buf(),
    }
}

/// A temporary working directory beside an output, for files a job's
/// helpers (a cluster's executors) read: removed when dropped, and by
/// [`remove_pending_and_exit`] when a signal ends the job.
#[derive(Debug)]
pub struct ScratchDir {
    temp: TempDir,
    _registration: Registration,
}

impl ScratchDir {
    /// Creates `.{prefix}.XXXXXX` in the directory of `output` (links resolved).
    pub fn beside(output: &Path, prefix: &str) -> Result<Self> {
        let target = resolved(output);
        let dir = directory_of(&target);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{prefix}."))
            .tempdir_in(dir)
            .map_err(|e| JobError::io(dir.display(), e))?;
        Ok(Self {
            _registration: Registration::new(temp.path()),
            temp,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }
}

/// Renames the complete directory `staged` to `target` while no signal can
/// remove outputs: a directory already at `target` is moved aside first and
/// removed after (moved back if the rename fails).
pub fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    let _commits = commits();
    let io = |e| JobError::io(target.display(), e);
    let aside = match target.exists() {
        true => {
            let (dir, name) = split(target)?;
            let aside = dir.join(format!(".{name}.crossflow-old.{}", std::process::id()));
            std::fs::rename(target, &aside).map_err(io)?;
            Some(aside)
        }
        false => None,
    };
    if let Err(error) = std::fs::rename(staged, target) {
        if let Some(aside) = &aside {
            let _ = std::fs::rename(aside, target);
        }
        return Err(io(error));
    }
    if let Some(aside) = aside {
        std::fs::remove_dir_all(&aside).map_err(|e| JobError::io(aside.display(), e))?;
    }
    Ok(())
}

/// A path given by a flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagPath<'a> {
    /// The flag, e.g. `--output`.
    pub flag: &'static str,
    /// Its value.
    pub path: &'a Path,
}

impl<'a> FlagPath<'a> {
    /// `path` given by `flag`.
    pub fn new(flag: &'static str, path: &'a Path) -> Self {
        Self { flag, path }
    }
}

/// Refuses outputs that are an input (the same file after resolving links,
/// or a file inside an input directory) or the same file as another output.
pub fn check_paths(inputs: &[FlagPath<'_>], outputs: &[FlagPath<'_>]) -> Result<()> {
    for (i, output) in outputs.iter().enumerate() {
        let target = resolved(output.path);
        for input in inputs {
            if is_same_or_inside(&target, input.path) {
                return Err(clash(output, input, "would overwrite the input"));
            }
        }
        for other in &outputs[..i] {
            if target == resolved(other.path) {
                return Err(clash(output, other, "is the same file as"));
            }
        }
    }
    Ok(())
}

fn is_same_or_inside(target: &Path, input: &Path) -> bool {
    if same_file::is_same_file(target, input).unwrap_or(false) {
        return true;
    }
    let input = resolved(input);
    input.is_dir() && target.starts_with(&input) || target == input
}

fn clash(output: &FlagPath<'_>, other: &FlagPath<'_>, what: &str) -> JobError {
    JobError::Usage(format!(
        "{} {} {what} {} {}; choose another path",
        output.flag,
        output.path.display(),
        other.flag,
        other.path.display()
    ))
}

#[cfg(test)]
mod tests;
