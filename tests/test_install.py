"""A load-only install: ``pip install burstbench`` with no extras, in a fresh venv, from a copy of this tree.

What a user who only load-tests their own endpoint gets: no torch, BentoML, transformers or ONNX; one
import package (``import service`` and ``import analysis`` fail); ``burstbench run --host`` against a
plain HTTP server writes a run folder that ``burstbench report`` reads. About a minute (pip from the
local package index).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT, free_port

HEAVY = ("torch", "bentoml", "transformers", "onnx", "onnxruntime", "tokenizers", "datasets")
PLAIN_SERVER = textwrap.dedent("""
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"label": "positive"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def copy_tree(dest: Path) -> Path:
    """The files git would ship (tracked, and new ones not ignored): no build/, .venv or results."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def load_only_venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("load-only")
    source = copy_tree(base / "src")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(source)], capture_output=True,
                         text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


@pytest.mark.integration
def test_a_plain_install_has_no_model_libraries_and_one_package(load_only_venv, tmp_path):
    py = str(load_only_venv / "bin" / "python")
    listed = subprocess.run([py, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not installed & set(HEAVY), installed & set(HEAVY)
    code = ("import importlib.util as u, burstbench.arrivals, burstbench.analysis, burstbench.spec\n"
            "print([n for n in ('service', 'analysis', 'arrivals', 'locustfiles', 'resilience', 'experiments')"
            " if u.find_spec(n)])")
    found = subprocess.run([py, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "[]"  # nothing but burstbench at the top of site-packages


@pytest.mark.integration
def test_run_against_any_endpoint_then_report_with_only_the_installed_package(load_only_venv, tmp_path):
    bin_dir = load_only_venv / "bin"
    port = free_port()
    (tmp_path / "server.py").write_text(PLAIN_SERVER)
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py"), str(port)])
    try:
        run = subprocess.run([str(bin_dir / "burstbench"), "run", "--host", f"http://127.0.0.1:{port}",
                              "--preset", "plain", "--path", "/predict", "--requests", "50", "--rate", "20"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["spec"]["load"]["rate"] == 20 and info["spec"]["target"]["path"] == "/predict"
    assert sum(1 for _ in (run_dir / "requests.csv").open()) == 51  # a header and one row per request
    report = subprocess.run([str(bin_dir / "burstbench"), "report", str(run_dir)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (run_dir / "report" / "report.html").is_file() and "50 of 50 requests succeeded" in report.stdout
    locustfile = subprocess.run([str(bin_dir / "burstbench"), "locustfile", "http"], capture_output=True, text=True)
    assert Path(locustfile.stdout.strip()).is_file()
    assert str(load_only_venv) in locustfile.stdout  # the installed copy, not this checkout's
