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


@pytest.fixture(autouse=True)
def _per_test_deadline():
    with deadline(TEST_DEADLINE_SECONDS, "test"):
        yield
