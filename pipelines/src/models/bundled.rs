//! Where the bundled models are found: `$CROSSFLOW_HOME/models`, beside the
//! binary, in the `crossflow-models` wheel, or in the source tree.

use std::path::{Path, PathBuf};

use crate::{JobError, Result};

/// The Python package of the `crossflow-models` wheel, which holds the bundled
/// models of a pip-installed crossflow.
pub const MODELS_PYTHON_PACKAGE: &str = "crossflow_models";

/// Where a bundled model is looked for: `$CROSSFLOW_HOME/models`, `models/`
/// beside the binary, the `crossflow_models` Python package installed beside
/// the binary (see [`crossflow::install`]) and, in development builds, the
/// repository the binary was built from.
pub fn bundled_model_dir(name: &str) -> Result<PathBuf> {
    let home = std::env::var_os("CROSSFLOW_HOME").map(PathBuf::from);
    let candidates = bundled_model_candidates(
        name,
        home.as_deref(),
        crossflow::install::executable_dir().as_deref(),
        crossflow::install::source_tree(),
    );
    candidates
        .iter()
        .find(|dir| dir.join("config.json").is_file())
        .cloned()
        .ok_or_else(|| JobError::BundledModelMissing {
            name: name.to_string(),
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn bundled_model_candidates(
    name: &str,
    home: Option<&Path>,
    exe_dir: Option<&Path>,
    source_tree: Option<&Path>,
) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = home.map(|home| home.join("models")).into_iter().collect();
    if let Some(dir) = exe_dir {
        roots.push(dir.join("models"));
        roots.extend(crossflow::install::python_package_dirs(
            dir,
            MODELS_PYTHON_PACKAGE,
        ));
    }
    roots.extend(source_tree.map(|root| root.join("models")));
    roots.iter().map(|root| root.join(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_models_are_found_in_the_installed_models_package() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let package = root
            .path()
            .join("lib/python3.11/site-packages")
            .join(MODELS_PYTHON_PACKAGE);
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&package).unwrap();
        let home = Path::new("/home/crossflow");
        let candidates = bundled_model_candidates("m", Some(home), Some(&bin), None);
        assert_eq!(
            candidates,
            vec![
                home.join("models/m"),
                bin.join("models/m"),
                package.join("m")
            ]
        );
    }

    #[test]
    fn development_builds_also_look_in_the_source_tree() {
        let tree = Path::new("/src/crossflow");
        let candidates = bundled_model_candidates("m", None, None, Some(tree));
        assert_eq!(candidates, vec![tree.join("models/m")]);
    }
}
