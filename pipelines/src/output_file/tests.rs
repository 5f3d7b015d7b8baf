//! Tests of the atomic outputs and the path checks.

use super::*;
use std::io::Write;

#[test]
fn a_dropped_output_leaves_the_target_untouched_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.parquet");
    std::fs::write(&target, b"previous").unwrap();
    let (output, mut file) = OutputFile::create(&target).unwrap();
    file.write_all(b"partial").unwrap();
    drop(output);
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_committed_output_replaces_the_target_a_link_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.parquet");
    let link = dir.path().join("link.parquet");
    std::fs::write(&real, b"previous").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (output, mut file) = OutputFile::create(&link).unwrap();
    file.write_all(b"new").unwrap();
    output.commit().unwrap();
    assert_eq!(std::fs::read(&real).unwrap(), b"new");
    assert!(link.is_symlink());
}

#[test]
fn pending_outputs_are_removed_for_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (file_output, _file) = OutputFile::create(&dir.path().join("a.parquet")).unwrap();
    let dir_output = StagedOutput::create(&dir.path().join("b")).unwrap();
    let scratch = ScratchDir::beside(&dir.path().join("c.parquet"), "job").unwrap();
    std::fs::write(scratch.path().join("index"), b"staged").unwrap();
    let (file_temp, dir_temp, scratch_dir) = (
        file_output.temp.to_path_buf(),
        dir_output.temp.path().to_path_buf(),
        scratch.path().to_path_buf(),
    );
    assert!(scratch_dir.starts_with(dir.path().canonicalize().unwrap()));
    remove_pending();
    assert!(!file_temp.exists() && !dir_temp.exists() && !scratch_dir.exists());
    std::mem::forget(file_output);
    std::mem::forget(dir_output);
    std::mem::forget(scratch);
}

#[test]
fn a_staged_directory_moves_its_files_into_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let output = StagedOutput::create(&target).unwrap();
    std::fs::create_dir_all(output.staged().join("k=1")).unwrap();
    std::fs::write(output.staged().join("k=1/part.parquet"), b"x").unwrap();
    output.commit().unwrap();
    assert_eq!(
        std::fs::read(target.join("k=1/part.parquet")).unwrap(),
        b"x"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_staged_file_replaces_the_target_only_when_committed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.parquet");
    std::fs::write(&target, b"previous").unwrap();
    let output = StagedOutput::create(&target).unwrap();
    std::fs::write(output.staged(), b"partial").unwrap();
    drop(output);
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");
    let output = StagedOutput::create(&target).unwrap();
    std::fs::write(output.staged(), b"new").unwrap();
    output.commit().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn outputs_equal_to_an_input_or_each_other_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    let link = dir.path().join("link.parquet");
    std::fs::write(&input, b"data").unwrap();
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let inputs = [FlagPath::new("--input", &input)];
    let refused = |outputs: &[FlagPath<'_>]| check_paths(&inputs, outputs).is_err();
    assert!(refused(&[FlagPath::new("--output", &input)]));
    assert!(refused(&[FlagPath::new("--output", &link)]));
    let out = dir.path().join("out.parquet");
    let same = dir.path().join(".").join("out.parquet");
    assert!(refused(&[
        FlagPath::new("--output", &out),
        FlagPath::new("--pairs-output", &same)
    ]));
    assert!(!refused(&[FlagPath::new("--output", &out)]));
    let dangling = dir.path().join("dangling.parquet");
    std::os::unix::fs::symlink(&out, &dangling).unwrap();
    assert!(refused(&[
        FlagPath::new("--output", &out),
        FlagPath::new("--pairs-output", &dangling)
    ]));
    let inside = [FlagPath::new("--input", dir.path())];
    assert!(check_paths(&inside, &[FlagPath::new("--output", &out)]).is_err());
}
