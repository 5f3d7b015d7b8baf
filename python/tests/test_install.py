"""The installed wheel: ONNX Runtime and the models come from the
environment's packages, with nothing else set; the unrelated `crossflow`
distribution is refused."""

import subprocess
import sys
import sysconfig
from pathlib import Path

SITE = Path(sysconfig.get_paths()["purelib"]).resolve()


def python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env})


def test_imports_and_scores_with_nothing_set(tmp_path):
    done = python(
        "import crossflow; m = crossflow.CrossEncoder(); print(m.predict(('a', 'b')))",
        tmp_path, CROSSFLOW_LOG="crossflow=debug",
    )
    assert done.returncode == 0, done.stderr
    assert f"loading ONNX Runtime path={SITE}/onnxruntime/capi/libonnxruntime.so.1.31.1" in done.stderr
    assert f"onnx={SITE}/crossflow_models/crossflow-sts-minilm-l6/onnx/" in done.stderr


def test_the_unrelated_crossflow_distribution_is_refused(tmp_path):
    info = tmp_path / "other" / "crossflow-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crossflow\nVersion: 1.0.0\n")
    done = python("import crossflow", tmp_path, PYTHONPATH=str(tmp_path / "other"))
    assert done.returncode != 0
    assert "the PyPI distribution 'crossflow' 1.0.0 (an unrelated project)" in done.stderr


def test_a_missing_onnx_runtime_library_is_an_error_naming_it(tmp_path):
    # In a process of its own: ONNX Runtime is loaded once per process.
    library = tmp_path / "libonnxruntime.so"
    done = python(f"import crossflow; crossflow.CrossEncoder(ort_lib={str(library)!r})", tmp_path)
    assert done.returncode != 0
    assert "crossflow.CrossflowError: ONNX Runtime library" in done.stderr and str(library) in done.stderr
