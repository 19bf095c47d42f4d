"""The fixed-body endpoint of ``burstbench bench-generator``: nginx answering ``{"ok":1}`` on a free loopback port.

Never the bottleneck: one worker, keep-alive for a whole step, no access log. Its ``server {}`` block
also holds ``peers.NGINX_LOCATIONS`` so the peer tools get an OpenAI-compatible answer.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from burstbench import harness
from burstbench.experiments.peers import NGINX_LOCATIONS

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
NGINX_READY_S = 10.0


def find_nginx(explicit: str | None) -> str:
    for candidate in ([explicit] if explicit else NGINX_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    raise ValueError(f"nginx not found ({explicit or ', '.join(NGINX_CANDIDATES)}): run `make nginx` "
                     "(installs Debian's nginx) or pass --nginx PATH")


# -- the fixed-body endpoint ------------------------------------------------------------------
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # FastHttpUser keeps its connection: never make it reconnect mid-step.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{{"ok":1}}'; }}
{locations}
    }}
}}
"""


free_port = harness.free_port


class FixedBodyServer:
    """nginx in the foreground with a generated config in a temp dir, on a free loopback port."""

    def __init__(self, nginx: str):
        self.nginx = nginx
        self.tmp = Path(tempfile.mkdtemp(prefix="burstbench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.tmp / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port, locations=NGINX_LOCATIONS))
        self.proc: subprocess.Popen | None = None
        self.process: harness.Process | None = None

    def start(self) -> "FixedBodyServer":
        self.process = harness.Process([self.nginx, "-p", str(self.tmp), "-c", str(self.conf), "-e",
                                        str(self.tmp / "error.log")], log=self.tmp / "stdout.log",
                                       stop_timeout_s=10).start()
        self.proc = self.process.proc
        try:
            self.process.wait_ready(("127.0.0.1", self.port), NGINX_READY_S, every_s=0.1)
        except harness.NotReady:
            code = self.process.returncode
            self.stop()
            if code is not None:
                raise RuntimeError(f"nginx exited with code {code} at start: {self.log_tail()}") from None
            raise RuntimeError(f"nginx did not accept connections on {self.url} within {NGINX_READY_S:.0f} s: "
                               f"{self.log_tail()}") from None
        return self

    def log_tail(self) -> str:
        text = ""
        for name in ("error.log", "stdout.log"):
            path = self.tmp / name
            if path.is_file():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-3:]) or "(no log)"

    def version(self) -> str:
        out = subprocess.run([self.nginx, "-v"], capture_output=True, text=True, timeout=10)
        return (out.stderr or out.stdout).strip()

    def stop(self) -> None:
        """TERM the master (fast shutdown of its workers too), then KILL the group if it lingers."""
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc):
        self.stop()


