"""The built image run as Cloud Run runs it, for the image tests and `make bench`: Docker where an engine answers, else
podman; IMAGE= names another tag than yolo-cloud-run:cpu."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import requests
from conftest import KEYS, free_port, json_lines, wait_until

IMAGE = os.environ.get("IMAGE", "yolo-cloud-run:cpu")
API_KEY = KEYS[0]  # the keyed_server's too: the image's answers are compared with that server's
AUTH = {"Authorization": f"Bearer {API_KEY}"}
INSTALL_HINT = ("no container engine: install Docker (with a running daemon) or podman "
                "(Debian: apt-get install podman runc), or run `make image` first, which says how")


def _engine() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        return [docker]
    podman = shutil.which("podman")
    if podman is None:
        return None
    # podman on this kind of machine: runc (crun refuses its cgroups) and limits the kernel accepts.
    return [podman, "--runtime", "runc"]


ENGINE = _engine()
RUN_LIMITS = [] if ENGINE is None or ENGINE[0].endswith("docker") else \
    ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
# Cloud Run: any non-root uid, the image's filesystem read-only but the in-memory /tmp.
CLOUD_RUN = ["--user", "10001:10001", "--read-only", "--tmpfs", "/tmp:rw,size=2g"]


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    if ENGINE is None:
        import pytest

        pytest.fail(INSTALL_HINT)
    return subprocess.run([*ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check)


class Container:
    """As Terraform deploys it: Cloud Run's variables, and the API keys in a file mounted from Secret Manager."""

    def __init__(self, env: dict, keys_dir: Path, volumes: tuple[str, ...] = (), network: str = "host"):
        keys_dir.mkdir(exist_ok=True)
        (keys_dir / "api-keys").write_text(API_KEY + "\n")
        for path in (keys_dir, keys_dir / "api-keys"):
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by uid 10001
        self.name = f"yolo-test-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        variables = {"PORT": str(self.port), "K_SERVICE": "yolo", "K_REVISION": "yolo-00001-abc",
                     "K_CONFIGURATION": "yolo", "API_KEYS_FILE": "/secrets/api-keys",
                     "STORAGE_EMULATOR_HOST": os.environ.get("STORAGE_EMULATOR_HOST", ""),
                     "ENGINE": "pytorch",  # answers compared bit for bit with the venv's; the default has its own test
                     **env}
        variables = {key: value for key, value in variables.items() if value is not None}  # None: the image's own
        env_args = [arg for key, value in variables.items() for arg in ("--env", f"{key}={value}")]
        self.started = time.monotonic()
        engine("run", "--detach", "--name", self.name, "--network", network, *RUN_LIMITS, *CLOUD_RUN, *env_args,
               "--volume", f"{keys_dir}:/secrets:ro", *(arg for volume in volumes for arg in ("--volume", volume)), IMAGE)

    def running(self) -> bool:
        state = engine("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return state == "true"

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds from `run` to /readyz 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"the container exited with {self.exit_code()}:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - self.started
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout} s:\n{self.log_text()}")

    def wait_exit(self, timeout: float) -> int:
        engine("wait", self.name, timeout=timeout)
        return self.exit_code()

    def exit_code(self) -> int:
        return int(engine("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def log_text(self) -> str:
        result = engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def log_entries(self) -> list[dict]:
        return json_lines(self.log_text())

    def wait_for_log(self, prefix: str, timeout: float = 60) -> dict:
        """The first entry whose message starts with `prefix`, once the container has written it."""
        found: list[dict] = []

        def written() -> bool:
            found[:] = [e for e in self.log_entries() if e.get("message", "").startswith(prefix)][:1]
            return bool(found) or not self.running()

        wait_until(written, timeout, f"a log line starting {prefix!r}")
        assert found, f"the container stopped before logging {prefix!r}:\n{self.log_text()[-3000:]}"
        return found[0]

    def remove(self) -> None:
        engine("rm", "--force", self.name, check=False)
