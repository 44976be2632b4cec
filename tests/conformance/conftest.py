"""Session fixtures: one real `coffer server` and a registered owner account."""

from __future__ import annotations

import os

import pytest

from harness import OWNER_EMAIL, SDK_ENV_VARS, CofferServer, deadline

# Budget for one test (SDK calls set no timeout of their own).
TEST_DEADLINE_SECONDS = 180


@pytest.fixture(scope="session")
def coffer_server(tmp_path_factory):
    """Start `coffer server` on a free port; the SDK trusts its certificate via REQUESTS_CA_BUNDLE."""
    server = CofferServer(tmp_path_factory.mktemp("coffer"))
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for name in SDK_ENV_VARS:
            mp.delenv(name, raising=False)
        # `requests` (used by the SDK for API calls, uploads and file downloads) honours this
        # even with verification on; the suite never disables certificate checks.
        mp.setenv("REQUESTS_CA_BUNDLE", str(server.cert_path))
        mp.delenv("CURL_CA_BUNDLE", raising=False)
        existing = [p for p in (os.environ.get("NO_PROXY"), os.environ.get("no_proxy")) if p]
        no_proxy = ",".join(existing + ["127.0.0.1", "localhost"])
        mp.setenv("NO_PROXY", no_proxy)
        mp.setenv("no_proxy", no_proxy)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def owner(coffer_server):
    """Register the first owner with the one-time setup code the server wrote at first start."""
    code = coffer_server.setup_code_path.read_text().strip()
    assert code, "setup-code file is empty"
    out = coffer_server.cli(
        "vault",
        "register",
        "--server",
        coffer_server.url,
        "--email",
        OWNER_EMAIL,
        "--setup-code",
        code,
    )
    uid = out.get("uid")
    assert isinstance(uid, str) and uid, f"register printed no uid: {out}"
    return {"uid": uid, "email": OWNER_EMAIL, "setup_code": code}


@pytest.fixture(scope="session")
def start_extra_server(coffer_server, tmp_path_factory):
    """Factory for further servers: `start_extra_server(*flags)` starts `coffer server FLAGS...`
    with its own data dir, port and CLI home, registers its first owner and returns it.

    They serve the session server's certificate (`--tls-cert`/`--tls-key`; it names 127.0.0.1,
    not a port), so the one REQUESTS_CA_BUNDLE of the session trusts all of them: several
    self-signed certificates with the same subject in one bundle do not verify with OpenSSL.
    Extra servers are stopped at the end of the session.
    """
    started = []
    tls = coffer_server.cert_path.parent

    def start(*flags: str) -> CofferServer:
        server = CofferServer(
            tmp_path_factory.mktemp("coffer-extra"),
            ("--tls-cert", str(tls / "cert.pem"), "--tls-key", str(tls / "key.pem"), *flags),
        )
        server.cert_path = coffer_server.cert_path
        started.append(server)
        server.start()
        server.register_owner()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def limited_server(start_extra_server):
    """A server with short transactions and a small upload limit (write-path limits)."""
    return start_extra_server("--transaction-timeout", "3s", "--max-file-size", "64K")


@pytest.fixture(autouse=True)
def _per_test_deadline():
    with deadline(TEST_DEADLINE_SECONDS, "test"):
        yield
