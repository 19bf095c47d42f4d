"""Peer load tools: the command line and the checks, without installing or running a peer."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace

import pytest

from burstbench.experiments import peers


def test_aiperf_command_line_per_arrival(tmp_path):
    build = tmp_path / "build"
    common = dict(url="http://127.0.0.1:9", requests=1000, seed=7, out_dir=tmp_path / "out", timeout_s=60,
                  build_dir=build)
    poisson = peers.build_command("aiperf", rate_per_s=200, arrival="exponential", **common)
    gamma = peers.build_command("aiperf", rate_per_s=20, arrival=("gamma", 0.5), concurrency=64, **common)

    def flag(cmd, name):
        return cmd[cmd.index(name) + 1]

    assert poisson[:2] == [str(build / "peers" / "aiperf" / "venv" / "bin" / "aiperf"), "profile"]
    assert flag(poisson, "--arrival-pattern") == "poisson" and "--arrival-smoothness" not in poisson
    assert float(flag(poisson, "--request-rate")) == 200 and flag(poisson, "--request-count") == "1000"
    assert flag(poisson, "--random-seed") == "7" and "--concurrency" not in poisson
    # AIPerf's smoothness is the gamma shape, at the same mean gap 1/rate.
    assert flag(gamma, "--arrival-pattern") == "gamma" and float(flag(gamma, "--arrival-smoothness")) == 0.5
    assert float(flag(gamma, "--request-rate")) == 20 and flag(gamma, "--concurrency") == "64"
    for cmd in (poisson, gamma):
        # offline: a local tokenizer, and nothing but the measured requests on the wire
        assert flag(cmd, "--tokenizer") == str(build / "peers" / "aiperf" / "tokenizer")
        assert "--no-server-metrics" in cmd and "--no-gpu-telemetry" in cmd
        assert not any(a.startswith("--warmup") for a in cmd)
        assert flag(cmd, "--artifact-dir") == str(tmp_path / "out" / "artifacts")
    assert not build.exists()  # building a command installs nothing


def test_unsupported_arrival_is_refused_before_any_install(tmp_path, monkeypatch):
    no_gamma = replace(peers.PEERS["aiperf"], name="no-gamma", arrivals=("exponential",))
    monkeypatch.setitem(peers.PEERS, "no-gamma", no_gamma)
    args = dict(url="http://127.0.0.1:9", rate_per_s=20, requests=200, seed=0, out_dir=tmp_path / "out",
                timeout_s=60, build_dir=tmp_path / "build")
    with pytest.raises(ValueError, match=r"no-gamma .* has no gamma arrivals \(it supports exponential\)"):
        peers.run_peer("no-gamma", arrival=("gamma", 0.5), **args)
    for bad, message in ((("gamma", 0), "gamma shape must be a number > 0"), ("poisson", "arrival must be"),
                         (("weibull", 2.0), "arrival must be")):
        with pytest.raises(ValueError, match=message):
            peers.run_peer("aiperf", arrival=bad, **args)
    with pytest.raises(ValueError, match="unknown peer 'locust-ct'"):
        peers.run_peer("locust-ct", arrival="exponential", **args)
    assert not (tmp_path / "build").exists() and not (tmp_path / "out").exists()


def test_nginx_locations_answer_an_openai_chat_completion(tmp_path):
    body = re.search(r"return 200 '(.*)';", peers.NGINX_LOCATIONS).group(1)
    answer = json.loads(body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] >= 1
    assert all(f"location = {path} " in peers.NGINX_LOCATIONS for path in peers.PEER_PATHS)
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None:
        pytest.skip("nginx is not installed: `make nginx`")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:9;\n"
                    f"{peers.NGINX_LOCATIONS}        location / {{ return 200 '{{\"ok\":1}}'; }}\n    }}\n}}\n")
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
