"""Deployment artefacts, offline: the Bento builds and serves, the Kubernetes manifests validate.

`bentoml containerize` needs a Docker daemon, which this machine lacks: the image itself is untested.
What is tested is everything up to it: `bentoml build` with the network blocked, the generated
Dockerfile's model step rehearsed in the built Bento's own source folder, and the Bento served.
"""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes_validate import ValidationError, validate

from conftest import REPO_ROOT, free_port

K8S_VERSION = "1.33.0"  # the oldest Kubernetes these manifests promise to work on
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
BENTOFILES = {"sentiment": REPO_ROOT / "bentofile.yaml",
              "sentiment-gpu": REPO_ROOT / "deploy" / "bento" / "bentofile.gpu.yaml"}
BENTOML_PORT = 3000  # BentoML's default http.port, the port the container entrypoint serves on
READY_DEADLINE_S = 180
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",  # a refused proxy: any
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",  # download attempt fails
           "NO_PROXY": "", "no_proxy": "", "BENTOML_DO_NOT_TRACK": "True"}


# --- bentoml build -------------------------------------------------------------------------------

def build_bento(bentofile: Path, home: Path) -> Path:
    env = {**os.environ, **OFFLINE, "BENTOML_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "-o", "tag", "."],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return home / "bentos" / name / version


_BUILT: dict[str, tuple[Path, Path]] = {}


def built(name: str, tmp_path_factory) -> tuple[Path, Path]:
    """(BENTOML_HOME, bento folder) of one bentofile, built once per test session (about 6 s each)."""
    if name not in _BUILT:
        home = tmp_path_factory.mktemp("bentoml-home")
        _BUILT[name] = home, build_bento(BENTOFILES[name], home)
    return _BUILT[name]


@pytest.fixture(params=sorted(BENTOFILES))
def bento(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, built(request.param, tmp_path_factory)[1]


def included(bentofile: Path) -> set[str]:
    return set(yaml.safe_load(bentofile.read_text())["include"])


def test_bentofiles_include_the_same_files():
    assert included(BENTOFILES["sentiment"]) == included(BENTOFILES["sentiment-gpu"])


def test_bento_holds_the_service_and_only_its_files(bento):
    name, path = bento
    info = yaml.safe_load((path / "bento.yaml").read_text())
    assert info["service"] == "service.service:Sentiment" and info["entry_service"] == "Sentiment"
    routes = {r["route"]: r for r in info["schema"]["routes"]}
    assert routes["/analyze-sentiment"]["batchable"] is True
    assert routes["/analyze-sentiment"]["input"]["required"] == ["text"]
    src = path / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert files == included(BENTOFILES[name]) | {"bentofile.yaml"}  # no tests, no build/, no load side


def test_bento_pins_what_the_service_imports(bento):
    import bentoml

    name, path = bento
    requirements = (path / "env" / "python" / "requirements.txt").read_text().splitlines()
    runtime = "onnxruntime-gpu" if name.endswith("gpu") else "onnxruntime"
    for pin in ("torch==2.13.0", f"{runtime}>=1.32,<2", "transformers>=5.24,<6", f"bentoml=={bentoml.__version__}"):
        assert pin in requirements


def test_dockerfile_builds_the_model_after_the_source_is_in(bento):
    name, path = bento
    dockerfile = (path / "env" / "docker" / "Dockerfile").read_text()
    copy_source = dockerfile.index("COPY --chown=bentoml:bentoml . ./")
    build_model = dockerfile.index('python -m service build-model --size base --variants "$BURSTBENCH_IMAGE_VARIANTS"')
    assert copy_source < build_model < dockerfile.index("USER bentoml")
    assert f"EXPOSE {BENTOML_PORT}" in dockerfile
    assert "ENV BURSTBENCH_VARIANT=$BURSTBENCH_VARIANT" in dockerfile
    assert ("FROM nvidia/cuda:" in dockerfile) == name.endswith("gpu")


@pytest.mark.server
def test_built_bento_builds_its_model_and_serves(tmp_path_factory):
    """The image's model step and entrypoint, without Docker: run in the Bento's own source folder."""
    home, path = built("sentiment", tmp_path_factory)
    src = path / "src"
    env = {**os.environ, **OFFLINE, "BENTOML_HOME": str(home)}
    env = {k: v for k, v in env.items() if not k.startswith("BURSTBENCH_")}
    # The Dockerfile's step, with the tiny shape instead of base (seconds instead of a minute).
    step = subprocess.run([sys.executable, "-m", "service", "build-model", "--size", "tiny", "--variants", "onnx-fp32"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert step.returncode == 0, step.stderr[-2000:]
    port = free_port()
    log = (tmp_path_factory.mktemp("bento-serve") / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"the Bento did not become ready:\n{Path(log.name).read_text()[-3000:]}")
        info = requests.post(url + "/model-info", json={}, timeout=30).json()
        # The Bento's own copy of service/ was served (not the checkout's), with the model built beside it.
        assert info["settings"]["variants_dir"] == str(src / "build" / "variants")
        answer = requests.post(url + "/analyze-sentiment", json={"text": "fine"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["variant"] == "onnx-fp32"
        # The probe paths of every rendered Deployment answer on the real server.
        for deployment in sentiment_deployments():
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert requests.get(url + container[probe]["httpGet"]["path"], timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


# --- Kubernetes manifests -----------------------------------------------------------------------

def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not on PATH: overlays not rendered")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)


def plain_manifests() -> dict[str, dict]:
    """Every manifest file as written (kustomization.yaml files are kustomize's, not Kubernetes')."""
    docs = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name.endswith("-patch.yaml"):
            continue
        for i, doc in enumerate(load_docs(path.read_text())):
            docs[f"{path.relative_to(K8S)}#{i}"] = doc
    return docs


_RENDERED: dict[str, list[dict]] = {}


def rendered(name: str) -> list[dict]:
    """An overlay (cpu, gpu) or the locust kustomization, rendered once; a copy each call."""
    if name not in _RENDERED:
        _RENDERED[name] = kustomize(K8S / "overlays" / name if name in OVERLAYS else K8S / name)
    return copy.deepcopy(_RENDERED[name])


def sentiment_deployments() -> list[dict]:
    return [d for name in OVERLAYS for d in rendered(name) if d["kind"] == "Deployment"]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("key", sorted(plain_manifests()))
def test_manifest_file_validates(key):
    assert validate(plain_manifests()[key], K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", [*OVERLAYS, "locust"])
def test_rendered_kustomization_validates(name):
    docs = rendered(name)
    assert docs
    for doc in docs:
        validate(doc, K8S_VERSION, strict=True)


def _deployment():
    return copy.deepcopy(plain_manifests()["base/deployment.yaml#0"])


def _misspelt_probe(d):
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")


def _replicas_as_text(d):
    d["spec"]["replicas"] = "two"


def _container_without_name(d):
    del d["spec"]["template"]["spec"]["containers"][0]["name"]


def _port_as_list(d):
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = [3000]


@pytest.mark.parametrize("breakage", [_misspelt_probe, _replicas_as_text, _container_without_name, _port_as_list])
def test_validation_rejects_a_broken_deployment(breakage):
    broken = _deployment()
    breakage(broken)
    with pytest.raises(ValidationError):
        validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_service_point_at_the_real_port_and_routes(overlay):
    docs = rendered(overlay)
    deployment, service = one(docs, "Deployment", "sentiment"), one(docs, "Service", "sentiment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": BENTOML_PORT}
    paths = {probe: container[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe in paths:
        assert ports[container[probe]["httpGet"]["port"]] == BENTOML_PORT
    # Startup of the base model takes 15-20 s on CPU: the startup probe must allow well over that.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert ports[service["spec"]["ports"][0]["targetPort"]] == BENTOML_PORT


def test_overlays_set_replicas_and_gpus():
    cpu = one(rendered("cpu"), "Deployment", "sentiment")
    gpu_docs = rendered("gpu")
    gpu = one(gpu_docs, "Deployment", "sentiment")
    cpu_res = cpu["spec"]["template"]["spec"]["containers"][0]["resources"]
    gpu_c = gpu["spec"]["template"]["spec"]["containers"][0]
    assert cpu["spec"]["replicas"] == 2 and gpu["spec"]["replicas"] == 1
    assert "nvidia.com/gpu" not in cpu_res["limits"] and "nvidia.com/gpu" not in cpu_res["requests"]
    assert gpu_c["resources"]["limits"]["nvidia.com/gpu"] == gpu_c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert gpu_c["image"].startswith("burstbench/sentiment-gpu:")
    assert {"name": "BURSTBENCH_DEVICE", "value": "cuda"} in gpu_c["env"]
    runtime = one(gpu_docs, "RuntimeClass", "nvidia")
    assert gpu["spec"]["template"]["spec"]["runtimeClassName"] == runtime["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_settings_are_ones_the_service_accepts(overlay):
    from burstbench.service.settings import ServiceSettings

    container = one(rendered(overlay), "Deployment", "sentiment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "1") for e in container["env"]}  # valueFrom: a whole-core count
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), "an env variable is set twice"
    settings = ServiceSettings.from_env(env)  # raises, naming the variable, on a bad value
    known = {f"BURSTBENCH_{field.upper()}" for field in settings.describe()} | {"BURSTBENCH_MODEL"}
    assert set(env) <= known
    assert any(e.get("valueFrom", {}).get("resourceFieldRef", {}).get("resource") == "limits.cpu"
               for e in container["env"] if e["name"] == "BURSTBENCH_THREADS")


def test_locust_workers_find_the_master_and_the_service():
    docs = rendered("locust")
    job, workers = one(docs, "Job", "locust-master"), one(docs, "Deployment", "locust-worker")
    master_svc = one(docs, "Service", "locust-master")
    master_args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--master" in master_args and "--worker" in worker_args
    assert f"--expect-workers={workers['spec']['replicas']}" in master_args
    assert f"--master-host={master_svc['metadata']['name']}" in worker_args
    assert master_svc["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    sentiment = one(rendered("cpu"), "Service", "sentiment")
    assert f"--host=http://{sentiment['metadata']['name']}:{sentiment['spec']['ports'][0]['port']}" in master_args
    assert job["metadata"]["namespace"] == sentiment["metadata"]["namespace"]
