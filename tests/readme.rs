//! The README's quick examples run as shown: every command of the `score`,
//! `SQL`, `dedupe` and `search` blocks exits 0 in a directory where `examples/` is
//! visible, and the `enrich` command, pointed at a test broker instead of
//! `localhost:9092`, enriches what is produced and exits 0 on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crossflow_tests::enrich_io::{ids_of, produce_pairs, read_topic, signal};
use crossflow_tests::{broker::Broker, crossflow_binary, repo_root};

/// The command lines of the bash block under `### {example}` in the README's
/// `## Quick examples` section.
fn quick_example(example: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Quick examples\n")
        .nth(1)
        .expect("a `## Quick examples` section")
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split(&format!("\n### {example}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("a `### {example}` quick example"))
        .split("```bash\n")
        .nth(1)
        .expect("a bash block")
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<String> = block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(!commands.is_empty(), "the {example} block shows a command");
    for command in &commands {
        assert!(
            command.starts_with("crossflow "),
            "not a crossflow command: {command}"
        );
    }
    commands
}

/// A working directory with the repository's `examples/` in it.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("examples"), dir.path().join("examples")).unwrap();
    dir
}

/// `command` run by bash in `dir` with the built `crossflow` first on the PATH.
fn shell(command: &str, dir: &Path) -> Command {
    let bin = crossflow_binary();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("bash");
    shell
        .args(["-c", &format!("exec {command}")])
        .current_dir(dir)
        .env("PATH", path);
    shell
}

fn run(command: &str, dir: &Path) -> Output {
    let output = shell(command, dir).output().expect("bash");
    assert!(
        output.status.success(),
        "`{command}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs every command of a block; the files each one names after
/// `--output`, `--pairs-output` or `TO '...'` exist afterwards.
fn runs_as_shown(example: &str) {
    let dir = workdir();
    for command in quick_example(example) {
        run(&command, dir.path());
        for written in written_files(&command) {
            assert!(
                dir.path().join(&written).is_file(),
                "`{command}` wrote no {written}"
            );
        }
    }
}

/// The output files a command line names.
fn written_files(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let flagged = words
        .windows(2)
        .filter(|w| w[0] == "--output" || w[0] == "--pairs-output")
        .map(|w| w[1].to_string());
    let copied = command
        .split(" TO '")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string);
    flagged.chain(copied).collect()
}

#[test]
fn the_score_example_runs() {
    runs_as_shown("score");
}

#[test]
fn the_sql_example_runs() {
    runs_as_shown("SQL");
}

#[test]
fn the_dedupe_example_runs() {
    runs_as_shown("dedupe");
}

#[test]
fn the_search_example_runs() {
    runs_as_shown("search");
}

/// Stops the job on drop if the test fails before it does.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrich_example_runs() {
    let [command] = &quick_example("enrich")[..] else {
        panic!("the enrich block shows one command");
    };
    assert!(command.contains("localhost:9092"), "{command}");
    let broker = Broker::start();
    broker
        .create_topics(&["pairs", "enriched", "pairs.dlq"], 3)
        .await;
    let pairs: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("A man plays song {i} on a guitar."),
                "Someone plays music.".into(),
            )
        })
        .collect();
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let command = command.replace("localhost:9092", &broker.bootstrap());
    let dir = workdir();
    let job = Job(shell(&command, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("bash"));
    let outputs = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(120), |m| {
            m.len() >= pairs.len()
        })
    });
    assert_eq!(ids_of(&outputs).len(), pairs.len(), "every pair enriched");
    let first: serde_json::Value =
        serde_json::from_slice(rdkafka::Message::payload(&outputs[0]).expect("a payload")).unwrap();
    let mut fields = vec!["cross_score"];
    if command.contains("--threshold") {
        fields.push("is_paraphrase");
    }
    if command.contains("--nli") {
        fields.extend(["nli_label", "nli_probs"]);
    }
    for field in fields {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    signal(&job.0, "-TERM");
    let mut job = job;
    let status = tokio::task::block_in_place(|| job.0.wait()).unwrap();
    assert!(status.success(), "enrich after SIGTERM: {status}");
}
