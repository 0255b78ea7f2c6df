"""A real Label Studio for the integration tests: its own venv, loopback, a known user and token.

Importable (``LabelStudioServer``, ``ensure_venv``) and runnable by hand::

    .venv/bin/python tests/labeling/label_studio_server.py --install   # venv only (make test)
    .venv/bin/python tests/labeling/label_studio_server.py             # start, print, wait

The venv lives at ``<repo>/.venv-label-studio`` (``$FLYWHEEL_LABEL_STUDIO_VENV`` overrides),
separate from the project's so Label Studio's pinned dependencies (Django among them) never
leak in. It is created only when missing (pip install, about 90 s, needs the network).

The server runs with ``LABEL_STUDIO_SSRF_PROTECTION_ENABLED=false``: Label Studio refuses
webhook URLs that resolve to loopback or private addresses otherwise (403 "The provided URL was
not allowed"), and the webhook tests' receiver listens on 127.0.0.1. The server itself listens
on loopback only, so nothing outside the machine can make it call anywhere. A real deployment
keeps the protection on and gives the receiver a routable address (``--public-url``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

VERSION = "1.23.2"
REPO = Path(__file__).resolve().parents[2]
USERNAME = "flywheel@example.com"
PASSWORD = "flywheel-test-password"
TOKEN = "flywheel0test0token0123456789abc"


class SetupError(RuntimeError):
    """Label Studio could not be installed or started."""


def venv_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_LABEL_STUDIO_VENV") or REPO / ".venv-label-studio")


def executable(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "label-studio"


def ensure_venv(venv: Path | None = None, timeout: float = 900) -> Path:
    """The `label-studio` executable, installing label-studio==VERSION into `venv` if missing."""
    venv = venv or venv_dir()
    exe = executable(venv)
    marker = venv / f".label-studio-{VERSION}"
    if exe.exists() and marker.exists():
        return exe
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"label-studio=={VERSION}"],
            check=True,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or "").strip().splitlines()[-3:]
        raise SetupError(
            f"pip install label-studio=={VERSION} failed: {' | '.join(tail)}"
        ) from None
    except (subprocess.TimeoutExpired, OSError) as error:
        raise SetupError(f"could not create {venv}: {error}") from None
    if not exe.exists():
        raise SetupError(f"{exe} is missing after the install")
    marker.touch()
    return exe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelStudioServer:
    """``with LabelStudioServer(data_dir) as server: server.url, server.token``."""

    def __init__(self, data_dir: str | os.PathLike, exe: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.exe = exe or executable()
        self.token = TOKEN
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "label-studio.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_s: float = 120.0) -> LabelStudioServer:
        """Start (a restart keeps the port and the data dir, so clients reconnect)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HOST", "PORT", "USERNAME", "PASSWORD", "DEBUG")
        }
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_SENTRY_DSN="",
            LABEL_STUDIO_FRONTEND_SENTRY_DSN="",
            LABEL_STUDIO_COLLECT_ANALYTICS="false",
            LABEL_STUDIO_LATEST_VERSION_CHECK="false",
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            # let webhooks reach a receiver on loopback (see the module docstring)
            LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
        )
        command = [
            str(self.exe),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--username",
            USERNAME,
            "--password",
            PASSWORD,
            "--user-token",
            self.token,
            "--enable-legacy-api-token",
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait(wait_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        headers = {"Authorization": f"Token {self.token}"}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(
                    f"label-studio exited with {self.process.returncode}: {self.log_tail()}"
                )
            moved = self._announced_port()
            if moved is not None and moved != self.port:
                raise SetupError(f"port {self.port} was taken; label-studio moved to {moved}")
            try:
                r = requests.get(f"{self.url}/api/projects", headers=headers, timeout=5)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SetupError(f"label-studio did not answer within {wait_s:.0f} s: {self.log_tail()}")

    def _announced_port(self) -> int | None:
        """The port of the last `Starting development server at` line of the log, if any."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        found = re.findall(r"Starting development server at http://[^:/]+:(\d+)/", text)
        return int(found[-1]) if found else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    exe = ensure_venv()
    if "--install" in argv:
        print(exe)
        return 0
    import tempfile

    with LabelStudioServer(tempfile.mkdtemp(prefix="label-studio-"), exe) as server:
        print(f"LABEL_STUDIO_URL={server.url} LABEL_STUDIO_API_KEY={server.token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
