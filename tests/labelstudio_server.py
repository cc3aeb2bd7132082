"""A real Label Studio server for the tests, from its own virtual environment (its pins clash with ogdash's).

``make labelstudio`` (a step of ``make test``) installs ``requirements-labelstudio.txt`` into
``.venv-labelstudio/`` and runs ``python tests/labelstudio_server.py prepare``: Label Studio's
database migrations (about 90 s on two cores) run once into a template SQLite file. Each test
session copies the template, starts ``label-studio start`` on a free loopback port with a
throwaway user and API token, and stops it at the end (about 10-15 s to start).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("OGDASH_LABEL_STUDIO_VENV", ROOT / ".venv-labelstudio"))
TEMPLATE = "label_studio.sqlite3"


class Unavailable(RuntimeError):
    """Label Studio cannot start here; the message says why."""


@dataclass
class Server:
    url: str
    token: str
    email: str
    process: subprocess.Popen
    log: Path
    seconds: float  # from launch to the first healthy answer

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and nothing else
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def executable() -> Path:
    exe = VENV / "bin" / "label-studio"
    if not exe.exists():
        raise Unavailable(f"Label Studio is not installed in {VENV}; `make labelstudio` installs it")
    return exe


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false",
               PYTHONUNBUFFERED="1")
    return env


def prepare(timeout: float = 900) -> Path:
    """Run Label Studio's migrations once into ``.venv-labelstudio/template/`` and return the database file."""
    template = VENV / "template"
    db = template / TEMPLATE
    if db.is_file():
        return db
    building = VENV / "template.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    out = subprocess.run([str(executable()), "version", "--data-dir", str(building), "--database",
                          str(building / TEMPLATE)], env=_env(building), capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0 or not (building / TEMPLATE).is_file():
        raise Unavailable(f"Label Studio's migrations failed: {(out.stderr or out.stdout).strip()[-300:]}")
    shutil.rmtree(template, ignore_errors=True)
    building.rename(template)
    return db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir: Path, timeout: float = 180) -> Server:
    """A fresh server with its own copy of the template database, a throwaway user and a legacy API token."""
    launched = time.perf_counter()
    db = prepare()
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, data_dir / TEMPLATE)
    port, token = _free_port(), secrets.token_hex(20)
    email = f"annotator-{secrets.token_hex(3)}@example.com"
    log = data_dir / "label_studio.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(executable()), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir), "--database", str(data_dir / TEMPLATE), "--username", email,
             "--password", secrets.token_urlsafe(12), "--user-token", token, "--enable-legacy-api-token"],
            env=_env(data_dir), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    server = Server(url, token, email, process, log, 0.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"Label Studio exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    server.seconds = time.perf_counter() - launched
                    return server
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise Unavailable(f"Label Studio did not answer on {url} within {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-300:]
    except OSError:
        return "(no log)"


if __name__ == "__main__":
    if sys.argv[1:] != ["prepare"]:
        sys.exit("usage: python tests/labelstudio_server.py prepare")
    t = time.perf_counter()
    print(f"Label Studio template database: {prepare()} ({time.perf_counter() - t:.0f} s)")
