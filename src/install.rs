//! Where an installed crossflow finds what ships beside its binary: the ONNX
//! Runtime library and the bundled models.
//!
//! A pip-installed crossflow (the `crossflow-cli` wheel) has its binary in
//! `<prefix>/bin/` and the Python packages it relies on (`onnxruntime`,
//! `crossflow_models`) in `<prefix>/lib/python3.X/site-packages/`, or
//! `dist-packages` for Debian's system Python. That covers a virtual
//! environment, `pip install --user` (`~/.local`), pipx and `uv tool` (their
//! own environments; the executable's path is the resolved one, so a symlink
//! in `~/.local/bin` leads back to the environment).
//!
//! Development builds (cargo feature `dev-paths`, on by default) also look in
//! the source tree they were built from; distributed builds are made without
//! it, so that no build path is compiled into them.

use std::path::{Path, PathBuf};

/// The folder of the running executable, symlinks resolved.
pub fn executable_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

/// The installed Python package `package` for an executable in `exe_dir`:
/// every existing `<prefix>/{lib,lib64}/python3*/{site,dist}-packages/<package>`
/// where `<prefix>` is the parent of `exe_dir`, canonical and each once. When none exists, the pattern
/// itself is returned (it names no real folder) so that error messages can
/// say where crossflow looked.
pub fn python_package_dirs(exe_dir: &Path, package: &str) -> Vec<PathBuf> {
    let Some(prefix) = exe_dir.parent() else {
        return Vec::new();
    };
    let found: Vec<PathBuf> = ["lib", "lib64"]
        .iter()
        .flat_map(|lib| python_dirs(&prefix.join(lib)))
        .flat_map(|python| {
            ["site-packages", "dist-packages"].map(|site| python.join(site).join(package))
        })
        .filter_map(|dir| dir.canonicalize().ok())
        .fold(Vec::new(), |mut unique, dir| {
            // A venv's lib64 is a symlink to lib: the same package twice.
            if !unique.contains(&dir) {
                unique.push(dir);
            }
            unique
        });
    if found.is_empty() {
        vec![
            prefix
                .join("lib/python3*/{site,dist}-packages")
                .join(package),
        ]
    } else {
        found
    }
}

/// `python3.N` folders of a `lib` folder, newest version first.
fn python_dirs(lib: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    let mut dirs: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            let minor = name.to_str()?.strip_prefix("python3.")?.parse().ok()?;
            Some((minor, entry.path()))
        })
        .collect();
    dirs.sort_unstable_by_key(|(minor, _)| std::cmp::Reverse(*minor));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// The source tree this binary was built from, in development builds only
/// (feature `dev-paths`); `None` in distributed builds.
pub fn source_tree() -> Option<&'static Path> {
    #[cfg(feature = "dev-paths")]
    {
        Some(Path::new(env!("CARGO_MANIFEST_DIR")))
    }
    #[cfg(not(feature = "dev-paths"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(root: &Path, dir: &str) -> PathBuf {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn finds_site_and_dist_packages_under_the_prefix() {
        let root = tempfile::tempdir().unwrap();
        let bin = make(root.path(), "venv/bin");
        let site = make(root.path(), "venv/lib/python3.11/site-packages/onnxruntime");
        let dist = make(
            root.path(),
            "venv/lib64/python3.12/dist-packages/onnxruntime",
        );
        make(root.path(), "venv/lib/python3.11/site-packages/other");
        let canonical = |p: PathBuf| p.canonicalize().unwrap();
        assert_eq!(
            python_package_dirs(&bin, "onnxruntime"),
            vec![canonical(site), canonical(dist)]
        );
    }

    #[test]
    fn a_lib64_symlink_to_lib_gives_each_package_once() {
        let root = tempfile::tempdir().unwrap();
        let bin = make(root.path(), "venv/bin");
        let site = make(root.path(), "venv/lib/python3.11/site-packages/pkg");
        std::os::unix::fs::symlink("lib", root.path().join("venv/lib64")).unwrap();
        assert_eq!(
            python_package_dirs(&bin, "pkg"),
            vec![site.canonicalize().unwrap()]
        );
    }

    #[test]
    fn newest_python_first() {
        let root = tempfile::tempdir().unwrap();
        let bin = make(root.path(), "p/bin");
        let old = make(root.path(), "p/lib/python3.9/site-packages/pkg");
        let new = make(root.path(), "p/lib/python3.13/site-packages/pkg");
        let found = python_package_dirs(&bin, "pkg");
        assert_eq!(
            found,
            vec![new.canonicalize().unwrap(), old.canonicalize().unwrap()]
        );
    }

    #[test]
    fn a_missing_package_names_the_pattern_searched() {
        let root = tempfile::tempdir().unwrap();
        let bin = make(root.path(), "p/bin");
        let dirs = python_package_dirs(&bin, "pkg");
        assert_eq!(dirs.len(), 1);
        assert!(!dirs[0].exists());
        let shown = dirs[0].display().to_string();
        assert!(
            shown.ends_with("p/lib/python3*/{site,dist}-packages/pkg"),
            "{shown}"
        );
    }
}
