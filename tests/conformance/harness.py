"""Helpers shared by the conformance fixtures and tests.

Everything here drives a real `coffer` binary: one server process per test session and the
`coffer vault ...` owner commands (always with `--json`, one JSON object on stdout).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COFFER_BIN = REPO_ROOT / "target" / "debug" / "coffer"

# Master password of the test owner account (given to the CLI through COFFER_PASSWORD).
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "conformance-Owner-pass-7!"

SERVER_START_TIMEOUT = 60.0
SERVER_STOP_GRACE = 10.0
CLI_TIMEOUT = 120.0

# Environment variables the Python SDK reads on its own; a stray value in the developer's
# shell would silently change what the tests exercise, so they are removed for the session.
SDK_ENV_VARS = (
    "KSM_CONFIG",
    "KSM_TOKEN",
    "KSM_HOSTNAME",
    "KSM_SKIP_VERIFY",
    "KSM_CONFIG_FILE",
    "KSM_CACHE_DIR",
)


def coffer_bin() -> Path:
    return Path(os.environ.get("COFFER_BIN", str(DEFAULT_COFFER_BIN)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:])


class DeadlineExceeded(Exception):
    """Raised inside a blocked SDK call when its time budget is used up."""


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Interrupt the enclosed block after `seconds` (SIGALRM, main thread only).

    The SDK sets no request timeout and retries forever on repeated `key` errors when a
    custom server key is configured (PROTOCOL.md §2.10), so a misbehaving server could
    otherwise hang the whole suite.
    """

    # An enclosing deadline keeps running: this one never outlasts it, and it is re-armed
    # with its remaining time on the way out.
    outer_remaining = signal.alarm(0)
    started = time.monotonic()
    budget = min(seconds, outer_remaining) if outer_remaining else seconds

    def on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise DeadlineExceeded(f"{what} did not finish within {budget} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining:
            left = outer_remaining - int(time.monotonic() - started)
            signal.alarm(max(left, 1))


def server_env() -> dict:
    """The environment for a server child: no COFFER_* settings leak in from the shell."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COFFER_") or key == "COFFER_LOG"
    }


_created_databases: list = []


def _drop_databases() -> None:
    for admin, name in _created_databases:
        subprocess.run(
            ["psql", admin, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )


atexit.register(_drop_databases)


def create_database(admin_url: str) -> str:
    """A fresh PostgreSQL database next to the one `admin_url` names (dropped at exit)."""
    name = f"coffer_conformance_{os.getpid()}_{secrets.token_hex(4)}"
    done = subprocess.run(
        ["psql", admin_url, "-q", "-c", f'CREATE DATABASE "{name}"'],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot create a PostgreSQL database: {done.stderr}", pytrace=False)
    _created_databases.append((admin_url, name))
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


class CofferServer:
    """A `coffer server` child process with its own data dir, plus an isolated CLI home."""

    def __init__(self, workdir: Path, extra_args: Sequence[str] = ()):
        self.workdir = workdir
        # Further `coffer server` flags, e.g. ("--transaction-timeout", "3s").
        self.extra_args = tuple(extra_args)
        self.binary = coffer_bin()
        self.data_dir = workdir / "data"
        self.home = workdir / "home"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        self.cert_path = self.data_dir / "tls" / "cert.pem"
        self.setup_code_path = self.data_dir / "setup-code"
        self.process: Optional[subprocess.Popen] = None
        self._log_file = None

    # -- process lifecycle -------------------------------------------------------------

    def start(self, expect_setup_code: bool = True) -> None:
        """Start the server and wait until it serves.

        `expect_setup_code=False` is for a restart on a data dir whose first owner already
        registered (the setup-code file is gone then); the log is appended to, not replaced.
        """
        if not self.binary.is_file():
            pytest.fail(
                f"coffer binary not found at {self.binary}; build it with "
                "`cargo build --bin coffer` or point COFFER_BIN at it",
                pytrace=False,
            )
        self._log_file = open(self.log_path, "ab")
        database_args = []
        if os.environ.get("COFFER_TEST_POSTGRES_URL"):
            database_args = ["--database-url", self.postgres_database()]
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "server",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                self.host,
                "--public-host",
                self.host,
                *database_args,
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            env=server_env(),
        )
        started = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                pytest.fail(
                    f"coffer server exited with status {code} during start-up; log:\n"
                    f"{tail(self.log_path, 200)}",
                    pytrace=False,
                )
            if (
                self.cert_path.is_file()
                and (self.setup_code_path.is_file() or not expect_setup_code)
                and port_accepts(self.port)
            ):
                return
            if time.monotonic() - started > SERVER_START_TIMEOUT:
                expected = [self.cert_path] + ([self.setup_code_path] if expect_setup_code else [])
                missing = [str(p) for p in expected if not p.is_file()]
                self.stop()
                pytest.fail(
                    f"coffer server not ready after {SERVER_START_TIMEOUT:.0f} s "
                    f"(missing files: {missing or 'none'}, port {self.port} "
                    f"accepting: {port_accepts(self.port)}); log:\n{tail(self.log_path, 200)}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=SERVER_STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the server: no graceful shutdown, as in a crash of the process (the kernel
        keeps what was written, so this does not simulate a power cut)."""
        proc = self.process
        assert proc is not None and proc.poll() is None, "kill(): the server is not running"
        proc.kill()
        proc.wait()
        self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def register_owner(self, email: str = OWNER_EMAIL) -> str:
        """Register the first owner with the setup code of a fresh data dir; returns its uid."""
        code = self.setup_code_path.read_text().strip()
        assert code, "setup-code file is empty"
        return self.cli_uid(
            "vault", "register", "--server", self.url, "--email", email, "--setup-code", code
        )

    def migrate_to_postgres(self, admin_url: str) -> dict:
        """Stop, copy the SQLite vault into a fresh PostgreSQL database with `coffer admin
        migrate` (verified by the command), and start again on PostgreSQL, same data dir."""
        self.stop()
        url = create_database(admin_url)
        argv = [
            str(self.binary), "admin", "migrate",
            "--from", f"sqlite://{self.data_dir / 'coffer.db'}",
            "--to", url, "--json",
        ]
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=server_env(), timeout=CLI_TIMEOUT, check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"coffer admin migrate failed:\n{done.stderr}\n{done.stdout}", pytrace=False)
        report = json.loads(done.stdout)
        assert report.get("verified") is True, report
        self.extra_args = (*self.extra_args, "--database-url", url)
        self.start(expect_setup_code=False)
        return report

    def postgres_database(self) -> str:
        """A fresh PostgreSQL database for this server (kept across restarts, dropped at exit).

        COFFER_TEST_POSTGRES_URL names an existing database to connect to for CREATE DATABASE
        (e.g. postgres://postgres@127.0.0.1:5432/test).
        """
        if getattr(self, "_database_url", None):
            return self._database_url
        self._database_url = create_database(os.environ["COFFER_TEST_POSTGRES_URL"])
        return self._database_url

    # -- owner CLI ---------------------------------------------------------------------

    def cli_env(self) -> dict:
        env = dict(os.environ)
        env["COFFER_HOME"] = str(self.home)
        env["COFFER_PASSWORD"] = OWNER_PASSWORD
        env["COFFER_CA_CERT"] = str(self.cert_path)
        return env

    def cli(self, *args: str, positional: Sequence[str] = ()) -> dict:
        """Run `coffer ARGS... --json POSITIONAL...`; fail the test on a non-zero exit or bad output.

        A UID may start with `-` (PROTOCOL.md §3.10 only says a server SHOULD avoid that), which
        an argument parser would take for an option: UID-valued options are given as
        `--opt=UID` by the callers, and positional arguments go after `--` when one of them
        starts with `-`.
        """
        argv = [str(self.binary), *args, "--json"]
        if any(p.startswith("-") for p in positional):
            argv.append("--")
        argv += positional
        shown = " ".join(_quote(a) for a in argv)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.cli_env(),
                cwd=str(self.workdir),
                timeout=CLI_TIMEOUT,
            )
        except subprocess.TimeoutExpired as err:
            pytest.fail(
                f"`{shown}` did not finish within {CLI_TIMEOUT:.0f} s\n"
                f"stdout:\n{err.stdout}\nstderr:\n{err.stderr}\n"
                f"server log (tail):\n{tail(self.log_path)}",
                pytrace=False,
            )
        if done.returncode != 0:
            pytest.fail(
                f"`{shown}` exited with status {done.returncode}\n"
                f"stderr:\n{done.stderr}\nstdout:\n{done.stdout}\n"
                f"server log (tail):\n{tail(self.log_path, 30)}",
                pytrace=False,
            )
        try:
            value = json.loads(done.stdout)
        except json.JSONDecodeError as err:
            pytest.fail(
                f"`{shown}` did not print exactly one JSON object on stdout ({err}):\n"
                f"{done.stdout!r}\nstderr:\n{done.stderr}",
                pytrace=False,
            )
        if not isinstance(value, dict):
            pytest.fail(
                f"`{shown}` printed JSON that is not an object: {done.stdout!r}",
                pytrace=False,
            )
        return value

    def cli_uid(self, *args: str, positional: Sequence[str] = ()) -> str:
        out = self.cli(*args, positional=positional)
        uid = out.get("uid")
        assert isinstance(uid, str) and uid, f"`coffer {' '.join(args)}` gave no uid: {out}"
        return uid


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=@" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
