"""Models by Hugging Face Hub id from Python, against a Hub served by the
test on 127.0.0.1: the file list API and the resolve URLs with the headers
the Hub sends (x-repo-commit, ETags that are the files' hashes, ranges)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import crossflow

REPO_ID = "cross-encoder/crossflow-sts"
COMMIT = "5f1e1d5c4b3a29180706f5e4d3c2b1a098765432"


def published(model_dir: Path) -> dict[str, bytes]:
    """The bundled model's files, its graph as `onnx/model.onnx`."""
    files = {}
    for path in model_dir.rglob("*"):
        if path.is_file():
            name = path.relative_to(model_dir).as_posix()
            files["onnx/model.onnx" if name.endswith(".onnx") else name] = path.read_bytes()
    return files


def etag(name: str, data: bytes) -> str:
    if name.endswith(".onnx"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def hub():
    import crossflow_models

    files = published(Path(crossflow_models.path("crossflow-sts-minilm-l6")))
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            info = f"/api/models/{REPO_ID}/revision/"
            if self.path.startswith(info) and self.path[len(info):] in ("main", COMMIT):
                siblings = [{"rfilename": name} for name in sorted(files)]
                body = json.dumps({"id": REPO_ID, "sha": COMMIT, "siblings": siblings}).encode()
                return self.reply(200, body, {"Content-Type": "application/json"})
            for revision in ("main", COMMIT):
                prefix = f"/{REPO_ID}/resolve/{revision}/"
                name = self.path[len(prefix):]
                if self.path.startswith(prefix) and name in files:
                    return self.file(name, files[name])
            self.reply(404, b"", {})

        def file(self, name: str, data: bytes):
            start, end = 0, len(data) - 1
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):
                first, _, last = wanted[6:].partition("-")
                start, end = int(first or 0), int(last) if last else end
            tag = f'"{etag(name, data)}"'
            headers = {"x-repo-commit": COMMIT, "ETag": tag, "x-linked-etag": tag,
                       "Content-Range": f"bytes {start}-{end}/{len(data)}"}
            self.reply(206 if wanted else 200, data[start:end + 1], headers)

        def reply(self, status: int, body: bytes, headers: dict[str, str]):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


PAIRS = [("A man is playing a guitar.", "A man plays an instrument."),
         ("A man is playing a guitar.", "The stock market fell sharply today.")]


def test_a_hub_id_loads_the_same_files_pinned_and_cached(hub, model, tmp_path, monkeypatch):
    endpoint, requests = hub
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(FileNotFoundError, match=REPO_ID):
        crossflow.CrossEncoder(REPO_ID, cache_folder=tmp_path, local_files_only=True)
    assert requests == [], "local_files_only makes no request"

    from_hub = crossflow.CrossEncoder(REPO_ID, cache_folder=tmp_path)
    assert from_hub.name == REPO_ID and from_hub.revision == COMMIT
    assert Path(from_hub.path) == tmp_path / "models--cross-encoder--crossflow-sts" / "snapshots" / COMMIT
    np.testing.assert_array_equal(from_hub.predict(PAIRS), model.predict(PAIRS))
    assert from_hub.fingerprint != model.fingerprint, "the commit is part of the fingerprint"
    assert COMMIT in repr(from_hub)

    requests.clear()
    pinned = crossflow.CrossEncoder(REPO_ID, revision=COMMIT, cache_folder=tmp_path, local_files_only=True)
    assert pinned.fingerprint == from_hub.fingerprint
    assert requests == []
    with pytest.raises(ValueError, match="already names a revision"):
        crossflow.CrossEncoder(f"{REPO_ID}@main", revision=COMMIT, cache_folder=tmp_path)


def test_an_unknown_repo_is_a_value_error_naming_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub[0])
    with pytest.raises(ValueError, match="org/unknown"):
        crossflow.CrossEncoder("org/unknown", cache_folder=tmp_path)
    with pytest.raises(FileNotFoundError, match="ORG/NAME"):
        crossflow.CrossEncoder("no/such/dir", cache_folder=tmp_path)
