//! A Hugging Face Hub served by the test itself on 127.0.0.1: the file list
//! API and the resolve URLs `hf-hub` reads, with the headers it needs
//! (`x-repo-commit`, ETags that are the files' hashes, `Content-Range`), over
//! files held in memory. It records every request, and can refuse requests
//! without a token or drop the connection in the middle of one file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One commit of a repo, and the branches or tags naming it.
pub struct FakeCommit {
    /// 40 hex digits.
    pub sha: String,
    /// Branches and tags, e.g. `main`.
    pub refs: Vec<String>,
    /// Path in the repo → contents.
    pub files: BTreeMap<String, Arc<Vec<u8>>>,
}

/// A model repo.
pub struct FakeRepo {
    /// `ORG/NAME`.
    pub id: String,
    /// Its commits.
    pub commits: Vec<FakeCommit>,
}

/// Faults the server injects.
#[derive(Default, Clone)]
pub struct Faults {
    /// Requests without `Authorization: Bearer TOKEN` get 401, with another token 403.
    pub token: Option<String>,
    /// This file's body stops half-way and the connection is dropped.
    pub drop_file: Option<String>,
    /// This file is served with its last byte changed, under its true ETag.
    pub corrupt_file: Option<String>,
}

struct State {
    repos: Vec<FakeRepo>,
    requests: Mutex<Vec<String>>,
    faults: Mutex<Faults>,
}

/// The running server; it stops when dropped.
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub endpoint: String,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeHub {
    /// Serves `repos` on a free port.
    pub fn start(repos: Vec<FakeRepo>) -> Self {
        let state = Arc::new(State {
            repos,
            requests: Mutex::default(),
            faults: Mutex::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fake Hub runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake Hub");
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let served = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
                let state = served.clone();
                async move { state.answer(&uri, &headers) }
            });
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint,
            state,
            _runtime: runtime,
        }
    }

    /// The requests so far, each `PATH [RANGE]`.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Injects `faults` from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.lock().unwrap() = faults;
    }
}

impl State {
    fn answer(&self, uri: &Uri, headers: &HeaderMap) -> Response {
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let path = uri.path().to_string();
        self.requests
            .lock()
            .unwrap()
            .push(format!("{path} {}", range.clone().unwrap_or_default()));
        let faults = self.faults.lock().unwrap().clone();
        if let Some(token) = &faults.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match given {
                None => return StatusCode::UNAUTHORIZED.into_response(),
                Some(given) if given != format!("Bearer {token}") => {
                    return StatusCode::FORBIDDEN.into_response();
                }
                Some(_) => {}
            }
        }
        if let Some(rest) = path.strip_prefix("/api/models/") {
            return self.info(rest);
        }
        let Some((commit, file)) = self.locate(&path) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let Some(contents) = commit.files.get(&file) else {
            return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")]).into_response();
        };
        let dropped = faults.drop_file.as_deref() == Some(file.as_str());
        let mut response = serve_file(&commit.sha, &file, contents, range.as_deref(), dropped);
        if faults.corrupt_file.as_deref() == Some(file.as_str()) {
            let mut changed = contents.as_ref().clone();
            *changed.last_mut().expect("a non-empty file") ^= 1;
            let served = serve_file(
                &commit.sha,
                &file,
                &Arc::new(changed),
                range.as_deref(),
                false,
            );
            *response.body_mut() = served.into_body();
        }
        response
    }

    /// `GET /api/models/ORG/NAME/revision/REV`: the commit and its files.
    fn info(&self, rest: &str) -> Response {
        let Some((id, revision)) = rest.split_once("/revision/") else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let Some(commit) = self.commit(id, revision) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let siblings: Vec<String> = commit
            .files
            .keys()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"id\":\"{id}\",\"sha\":\"{}\",\"siblings\":[{}]}}",
            commit.sha,
            siblings.join(",")
        );
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// `/ORG/NAME/resolve/REV/FILE`.
    fn locate(&self, path: &str) -> Option<(&FakeCommit, String)> {
        let (id, rest) = path.trim_start_matches('/').split_once("/resolve/")?;
        let (revision, file) = rest.split_once('/')?;
        let commit = self.commit(id, revision)?;
        Some((commit, file.to_string()))
    }

    fn commit(&self, id: &str, revision: &str) -> Option<&FakeCommit> {
        let repo = self.repos.iter().find(|r| r.id == id)?;
        repo.commits
            .iter()
            .find(|c| c.sha == revision || c.refs.iter().any(|r| r == revision))
    }
}

/// A file or a range of it, with the Hub's headers; `dropped`: half of a
/// body longer than one byte, then the connection is cut.
fn serve_file(
    commit: &str,
    file: &str,
    contents: &Arc<Vec<u8>>,
    range: Option<&str>,
    dropped: bool,
) -> Response {
    let size = contents.len();
    let (start, end) = parse_range(range, size);
    let large = file.ends_with(".onnx");
    let etag = if large {
        hex(&Sha256::digest(contents.as_slice()))
    } else {
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {size}\0").as_bytes());
        hasher.update(contents.as_slice());
        hex(&hasher.finalize())
    };
    let length = end + 1 - start;
    let body = if dropped && length > 1 {
        let half = Bytes::copy_from_slice(&contents[start..start + length / 2]);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other("connection dropped by the fake Hub")),
        ];
        Body::from_stream(futures::stream::iter(chunks))
    } else {
        Body::from(contents[start..=end].to_vec())
    };
    let mut response = Response::new(body);
    *response.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let headers = response.headers_mut();
    let quoted = format!("\"{etag}\"");
    headers.insert("x-repo-commit", commit.parse().unwrap());
    headers.insert(header::ETAG, quoted.parse().unwrap());
    if large {
        headers.insert("x-linked-etag", quoted.parse().unwrap());
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers.insert(
        header::CONTENT_RANGE,
        format!("bytes {start}-{end}/{size}").parse().unwrap(),
    );
    response
}

/// `bytes=A-B` or `bytes=A-` within `size`; none: everything.
fn parse_range(range: Option<&str>, size: usize) -> (usize, usize) {
    let last = size.saturating_sub(1);
    let Some((start, end)) = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    else {
        return (0, last);
    };
    let start = start.parse().unwrap_or(0).min(last);
    let end = end.parse().unwrap_or(last).min(last);
    (start, end)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of a local model directory as a repo's, read recursively.
pub fn files_of(dir: &Path) -> BTreeMap<String, Arc<Vec<u8>>> {
    let mut files = BTreeMap::new();
    collect(dir, dir, &mut files);
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Arc<Vec<u8>>>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(name, Arc::new(std::fs::read(&path).unwrap()));
        }
    }
}
