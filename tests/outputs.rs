//! Nothing is destroyed: outputs appear whole or not at all, an output is
//! never an input or another output, and an error never comes after a file
//! was written. Driven through the real binary, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use crossflow_tests::{crossflow_binary, snli_pairs, write_pairs_parquet, write_parquet};

use crossflow_tests::{assert_refused_with, run_crossflow as crossflow};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The names in `dir` that are temporary outputs.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("crossflow-tmp"))
        .collect()
}

const PREVIOUS: &[u8] = b"the previous output, kept";

fn previous_output(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, PREVIOUS).unwrap();
    path
}

#[test]
fn score_refuses_an_output_that_is_its_input_or_a_link_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.parquet");
    write_pairs_parquet(&input);
    let before = std::fs::read(&input).unwrap();
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    for output in [&input, &link] {
        let run = crossflow(&["score", "--input", s(&input), "--output", s(output)]);
        assert_refused_with(&run, 2, &["--output", "would overwrite the input"]);
        assert_eq!(std::fs::read(&input).unwrap(), before, "input untouched");
    }
}

#[test]
fn a_failed_score_keeps_the_previous_output_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.parquet");
    write_pairs_parquet(&input);
    let output = previous_output(dir.path(), "scored.parquet");
    // `id` is an integer column: the first batch fails.
    let run = crossflow(&[
        "score",
        "--input",
        s(&input),
        "--a",
        "id",
        "--output",
        s(&output),
    ]);
    assert_refused_with(&run, 4, &["\"id\"", "pairs.parquet"]);
    assert_eq!(std::fs::read(&output).unwrap(), PREVIOUS);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_score_keeps_the_previous_output_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.parquet");
    let pairs = snli_pairs(20_000);
    let column = |pick: fn(&(String, String)) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(pairs.iter().map(pick)))
    };
    write_parquet(
        &input,
        vec![("a", column(|p| &p.0)), ("b", column(|p| &p.1))],
    );
    let output = previous_output(dir.path(), "scored.parquet");
    let mut child = Command::new(crossflow_binary())
        .args(["score", "--input", s(&input), "--output", s(&output)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while temporaries(dir.path()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no temporary output appeared"
        );
        assert!(child.try_wait().unwrap().is_none(), "score ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    assert_eq!(std::fs::read(&output).unwrap(), PREVIOUS);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_copy_that_fails_part_way_leaves_the_previous_file_and_no_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["out.parquet", "out_dir/"] {
        let path = dir.path().join(target);
        let previous = if target.ends_with('/') {
            std::fs::create_dir(&path).unwrap();
            previous_output(&path, "old.parquet")
        } else {
            previous_output(dir.path(), target)
        };
        // Division by zero at row 250,000, after many batches were written.
        let copy = format!(
            "COPY (SELECT value, 1 / (value - 250000) AS x FROM generate_series(1, 300000)) \
             TO '{}' STORED AS PARQUET",
            path.display()
        );
        let run = crossflow(&["sql", &copy]);
        assert_refused_with(&run, 1, &["Divide by zero"]);
        assert_eq!(std::fs::read(&previous).unwrap(), PREVIOUS);
        assert_eq!(temporaries(dir.path()), Vec::<String>::new());
        if target.ends_with('/') {
            assert_eq!(std::fs::read_dir(&path).unwrap().count(), 1, "no new file");
        }
    }
}

#[test]
fn a_copy_writes_its_file_and_its_directory_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = previous_output(dir.path(), "out.parquet");
    let directory = dir.path().join("parts");
    let copy = |target: &Path, suffix: &str| {
        format!(
            "COPY (SELECT value FROM generate_series(1, 10)) TO '{}{suffix}' STORED AS PARQUET",
            target.display()
        )
    };
    let run = crossflow(&["sql", &copy(&file, ""), &copy(&directory, "/")]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_ne!(std::fs::read(&file).unwrap(), PREVIOUS, "replaced");
    assert!(std::fs::read_dir(&directory).unwrap().count() >= 1);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    let count = crossflow(&[
        "sql",
        "--table",
        &format!("t={}", file.display()),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM t",
    ]);
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "n\n10");
}

#[test]
fn a_bad_later_statement_stops_the_call_before_any_copy_runs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a.parquet");
    let copy = format!(
        "COPY (SELECT 1 AS x) TO '{}' STORED AS PARQUET",
        target.display()
    );
    let syntax = crossflow(&["sql", &copy, "SELEC oops"]);
    assert_refused_with(&syntax, 2, &["statement 2"]);
    assert!(!target.exists(), "the COPY did not run");
    let plan = crossflow(&["sql", &copy, "SELECT * FROM no_such_table"]);
    assert_refused_with(&plan, 2, &["statement 2", "no_such_table"]);
    assert!(!target.exists(), "the COPY did not run");
}

fn dedupe_input(dir: &Path, ids: &[&str]) -> PathBuf {
    let path = dir.join("texts.parquet");
    let texts = [
        "A man is playing a guitar.",
        "A man plays the guitar.",
        "The stock market fell sharply today.",
    ];
    write_parquet(
        &path,
        vec![
            (
                "id",
                Arc::new(StringArray::from_iter_values(ids.iter().copied())) as ArrayRef,
            ),
            (
                "text",
                Arc::new(StringArray::from_iter_values(texts.iter().take(ids.len()))),
            ),
        ],
    );
    path
}

/// `crossflow dedupe` of the `text` column of `input` into `output`.
fn dedupe(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let args = [
        "dedupe",
        "--input",
        s(input),
        "--text-column",
        "text",
        "--output",
        s(output),
    ];
    crossflow(&[&args[..], extra].concat())
}

#[test]
fn dedupe_refuses_two_outputs_at_one_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dedupe_input(dir.path(), &["1", "2", "3"]);
    let output = dir.path().join("out.parquet");
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&output, &link).unwrap();
    for pairs in [&output, &link] {
        let run = dedupe(&input, &output, &["--pairs-output", s(pairs)]);
        assert_refused_with(&run, 2, &["--pairs-output", "--output", "same file"]);
        assert!(!output.exists());
    }
}

#[test]
fn dedupe_refuses_duplicate_ids_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let input = dedupe_input(dir.path(), &["7", "8", "7"]);
    let output = dir.path().join("out.parquet");
    let run = dedupe(&input, &output, &["--id-column", "id"]);
    assert_refused_with(&run, 4, &["id \"7\"", "rows 0 and 2", "\"id\""]);
    assert!(!output.exists());
}

#[test]
fn statements_after_a_copy_still_run_in_order_and_see_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ten.parquet");
    let run = crossflow(&[
        "sql",
        "--format",
        "csv",
        &format!(
            "COPY (SELECT value FROM generate_series(1, 10)) TO '{}' STORED AS PARQUET",
            target.display()
        ),
        &format!(
            "CREATE EXTERNAL TABLE ten STORED AS PARQUET LOCATION '{}'",
            target.display()
        ),
        "SELECT count(*) AS n FROM ten",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("n\n10"));
}
