//! The pip packaging (pipelines/pyproject.toml, models/pyproject.toml) agrees
//! with the code: the ONNX Runtime version the engine loads, the bundled models
//! the binary looks for, the package it looks for them in, and one version.
//! The wheels themselves are built and installed by scripts/test-wheel.

use crossflow::runtime::{LIBRARY_NAME, PYTHON_PACKAGE};
use crossflow_pipelines::models::{BUNDLED_MODELS, MODELS_PYTHON_PACKAGE};
use crossflow_tests::repo_root;
use toml::Value;

fn pyproject(dir: &str) -> Value {
    let path = repo_root().join(dir).join("pyproject.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

fn onnxruntime_version() -> &'static str {
    LIBRARY_NAME
        .strip_prefix("libonnxruntime.so.")
        .expect("versioned library name")
}

#[test]
fn the_cli_wheel_requires_the_onnxruntime_the_engine_loads_and_the_models() {
    let cli = pyproject("pipelines");
    let models = pyproject("models");
    let dependencies = strings(&cli["project"]["dependencies"]);
    let onnxruntime = format!("{PYTHON_PACKAGE}=={}", onnxruntime_version());
    assert!(
        dependencies.contains(&onnxruntime.as_str()),
        "{dependencies:?}"
    );
    let models_pin = format!(
        "{}=={}",
        models["project"]["name"].as_str().unwrap(),
        models["project"]["version"].as_str().unwrap()
    );
    assert!(
        dependencies.contains(&models_pin.as_str()),
        "{dependencies:?}"
    );
    assert_eq!(cli["tool"]["maturin"]["bindings"].as_str(), Some("bin"));
    assert_eq!(cli["project"]["requires-python"].as_str(), Some(">=3.11"));
}

#[test]
fn one_version_for_the_crates_and_both_wheels() {
    let models = pyproject("models");
    assert_eq!(
        models["project"]["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let cli = pyproject("pipelines");
    assert!(strings(&cli["project"]["dynamic"]).contains(&"version"));
}

#[test]
fn the_wheel_ships_what_the_cli_is_built_to_be() {
    let maturin = &pyproject("pipelines")["tool"]["maturin"];
    assert_eq!(maturin["profile"].as_str(), Some("dist"));
    assert_eq!(
        maturin["no-default-features"].as_bool(),
        Some(true),
        "the dev-paths feature (source-tree paths) must stay out of the wheel"
    );
}

#[test]
fn the_models_wheel_holds_every_bundled_model_where_the_binary_looks() {
    let models = pyproject("models");
    let wheel = &models["tool"]["hatch"]["build"]["targets"]["wheel"];
    assert_eq!(strings(&wheel["packages"]), vec![MODELS_PYTHON_PACKAGE]);
    let included = wheel["force-include"].as_table().expect("force-include");
    for name in BUNDLED_MODELS {
        assert_eq!(
            included.get(name).and_then(Value::as_str),
            Some(format!("{MODELS_PYTHON_PACKAGE}/{name}").as_str()),
            "{name}"
        );
        assert!(
            repo_root()
                .join("models")
                .join(name)
                .join("config.json")
                .is_file()
        );
    }
    assert_eq!(included.len(), BUNDLED_MODELS.len());
    let init = std::fs::read_to_string(
        repo_root()
            .join("models")
            .join(MODELS_PYTHON_PACKAGE)
            .join("__init__.py"),
    )
    .expect("the package's __init__.py");
    let names = BUNDLED_MODELS.map(|name| format!("{name:?}")).join(", ");
    assert!(init.contains(&format!("NAMES = ({names})")), "{init}");
}
