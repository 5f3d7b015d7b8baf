//! Checking a downloaded file against the hash the Hub named it by: the
//! ETag of a large (LFS) file is its SHA-256, that of a small file its git
//! blob SHA-1. A file that does not match is never used.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash `etag` announces and the file's own, when they differ; `None`
/// when they match or the ETag is not a hash this check knows.
pub fn mismatch(path: &Path, etag: &str) -> std::io::Result<Option<(String, String)>> {
    let actual = match etag.len() {
        64 => hex(hash_file(Sha256::new(), path, None)?),
        40 => {
            let length = path.metadata()?.len();
            let header = format!("blob {length}\0");
            hex(hash_file(Sha1::new(), path, Some(header.as_bytes()))?)
        }
        _ => return Ok(None),
    };
    Ok((!actual.eq_ignore_ascii_case(etag)).then(|| (etag.to_string(), actual)))
}

fn hash_file<D: Digest>(
    mut digest: D,
    path: &Path,
    prefix: Option<&[u8]>,
) -> std::io::Result<Vec<u8>> {
    if let Some(prefix) = prefix {
        digest.update(prefix);
    }
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(digest.finalize().to_vec());
        }
        digest.update(&buffer[..read]);
    }
}

fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfs_and_git_etags_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        // `sha256sum` and `git hash-object` of "hello\n".
        let sha256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let git = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(mismatch(&path, sha256).unwrap(), None);
        assert_eq!(mismatch(&path, git).unwrap(), None);
        std::fs::write(&path, b"hello").unwrap();
        let (expected, actual) = mismatch(&path, sha256).unwrap().unwrap();
        assert_eq!(expected, sha256);
        assert_ne!(actual, sha256);
        assert!(mismatch(&path, git).unwrap().is_some());
        assert_eq!(mismatch(&path, "not-a-hash").unwrap(), None);
    }
}
