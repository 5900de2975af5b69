"""A Ray cluster of `ray start` nodes on this machine, with token auth, stopped by process id.

Each node is `ray start --block` in its own process group, with its own `--temp-dir` under the
cluster's (so no other Ray on the machine finds it as "the most recent cluster", and two nodes
on one machine do not share a runtime-env directory: a node unpacking a job's working dir into
the directory another node's job driver runs in removes it from under the driver) and on free
ports (two nodes on one machine, and anyone else's Ray, must not collide). Leaving the `with`
block, also after a failure, stops exactly those process groups and then any process whose
command line names the cluster's temp dir. Not `ray stop`: it stops every Ray process on the
machine, including other people's sweeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRay:
    def __init__(self, log_dir: Path, cpus_per_node: int = 1) -> None:
        self.bin = Path(sys.executable).parent
        self.log_dir, self.cpus = log_dir, cpus_per_node
        # Short, because Ray's Unix socket paths under it must stay within 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")
        token_file = Path(self.temp_dir, "auth_token")
        self.token = secrets.token_hex(32)  # what `ray get-auth-token --generate` writes
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",  # set explicitly on every process (see the README)
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",  # `bench` for jobs
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS"):
            self.env.pop(name, None)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def ray(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run the `ray` CLI with the cluster's environment (token auth included)."""
        return subprocess.run(
            [str(self.bin / "ray"), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, **kw,
        )  # fmt: skip

    def _start(self, name: str, *args: str) -> None:
        ports = (
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
        )
        # The node outlives this call: its log file stays open with it.
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [
                    str(self.bin / "ray"),
                    "start",
                    "--block",
                    f"--temp-dir={self.temp_dir}/{len(self.procs)}",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={self.cpus}",
                    "--disable-usage-stats",
                    *ports,
                    *args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def start_head(self, timeout: float = 120) -> None:
        self._start(
            "head", "--head", f"--port={self.gcs_port}", "--include-dashboard=true",
            f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={free_port()}",
        )  # fmt: skip
        self.wait_for_nodes(1, timeout)

    def add_node(self, timeout: float = 120) -> None:
        self._start(f"node{len(self.procs)}", f"--address={self.gcs}")
        self.wait_for_nodes(len(self.procs), timeout)

    def alive_nodes(self) -> int:
        """Alive nodes by the dashboard's state API (with the token); -1 while it is not up."""
        body = self._get("/api/v0/nodes?limit=100")
        if not body:
            return -1
        nodes = body.get("data", {}).get("result", {}).get("result", [])
        return sum(n.get("state") == "ALIVE" for n in nodes)

    def job_status(self, submission_id: str) -> str | None:
        """The job's status by the job server's REST API (what `ray job status` asks)."""
        return self._get(f"/api/jobs/{submission_id}").get("status")

    def _get(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.dashboard}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def wait_for_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() < n:
            dead = [p.args[2:4] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.log_dir.glob("*.log")
                )
                raise RuntimeError(
                    f"Ray nodes did not come up ({n} wanted; exited: {dead}):\n{logs}"
                )
            time.sleep(1)

    def stop(self) -> None:
        for proc in self.procs:  # `ray start --block` stops its node's processes on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs:  # whatever is left of the groups this cluster started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for pid in self._pids_naming_temp_dir():  # a Ray process that left its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _pids_naming_temp_dir(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if self.temp_dir.encode() in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
        return pids

    def __enter__(self) -> LocalRay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
