"""Several `coffer server` instances behind one PostgreSQL database (issue: scale-out).

Two instances on different ports share the database, a server key file (`--server-key-file`),
a files directory (`--files-dir`) and a TLS certificate. The official Python SDK binds through
one and reads and writes through the other; the same one-time token sent to both at once binds
exactly once; concurrent saves split across them have exactly one winner; and when one instance
is killed mid-traffic the other keeps serving and nothing acknowledged is lost.

These run only when COFFER_TEST_POSTGRES_URL is set (scripts/test.sh runs the suite a second
time on PostgreSQL); on the SQLite run they are skipped, since SQLite serves one instance.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from keeper_secrets_manager_core import SecretsManager
from keeper_secrets_manager_core.configkeys import ConfigKeys
from keeper_secrets_manager_core.dto.dtos import RecordCreate, RecordField
from keeper_secrets_manager_core.exceptions import KeeperError
from keeper_secrets_manager_core.storage import InMemoryKeyValueStorage

from harness import CofferServer

pytestmark = pytest.mark.skipif(
    not os.environ.get("COFFER_TEST_POSTGRES_URL"),
    reason="several instances need PostgreSQL (set COFFER_TEST_POSTGRES_URL)",
)


@pytest.fixture(scope="module")
def pair(coffer_server, tmp_path_factory):
    """Instances A and B sharing database, key, files and certificate."""
    shared = tmp_path_factory.mktemp("shared")
    key_file = shared / "server-key.json"
    subprocess.run(
        [str(coffer_server.binary), "admin", "gen-server-key", "-o", str(key_file)],
        check=True,
        capture_output=True,
    )
    tls = coffer_server.cert_path.parent
    flags = (
        "--tls-cert", str(tls / "cert.pem"),
        "--tls-key", str(tls / "key.pem"),
        "--server-key-file", str(key_file),
        "--files-dir", str(shared / "files"),
    )
    a = CofferServer(tmp_path_factory.mktemp("instance-a"), flags)
    a.cert_path = coffer_server.cert_path
    a.start()
    b = CofferServer(tmp_path_factory.mktemp("instance-b"), flags)
    b.cert_path = coffer_server.cert_path
    b._database_url = a.postgres_database()
    # A made the setup code (its hash is in the shared database); B has none to print.
    b.start(expect_setup_code=False)
    a.register_owner()
    folder = a.cli_uid("vault", "folder", "create", "Scale")
    record = a.cli_uid(
        "vault", "record", "add", f"--folder={folder}", "--type", "login", "--title", "Shared",
        "--field", "login=ops", "--field", "password=initial",
    )
    app = a.cli_uid("vault", "app", "create", "Scale App")
    a.cli("vault", "app", "share", "--editable", positional=[app, folder])
    try:
        yield {"a": a, "b": b, "folder": folder, "record": record, "app": app}
    finally:
        a.stop()
        b.stop()


def token(pair) -> str:
    out = pair["a"].cli("vault", "client", "add", "--unlock-ip", positional=[pair["app"]])
    return out["config"]


def sdk_on(config_b64: str, server: CofferServer) -> SecretsManager:
    storage = InMemoryKeyValueStorage(config_b64)
    storage.set(ConfigKeys.KEY_HOSTNAME, server.host)
    return SecretsManager(config=storage)


def point_at(sdk: SecretsManager, server: CofferServer) -> None:
    sdk.config.set(ConfigKeys.KEY_HOSTNAME, server.host)


def password(sdk: SecretsManager, uid: str) -> str:
    return sdk.get_secrets([uid])[0].field("password", single=True)


def test_bind_through_one_instance_read_and_write_through_the_other(pair):
    sdk = sdk_on(token(pair), pair["a"])
    assert [r.uid for r in sdk.get_secrets([pair["record"]])] == [pair["record"]]
    assert sdk.config.get(ConfigKeys.KEY_APP_KEY), "bound through A"
    point_at(sdk, pair["b"])
    record = sdk.get_secrets([pair["record"]])[0]
    before = record.revision
    record.field("password", "written-through-b")
    sdk.save(record)
    point_at(sdk, pair["a"])
    again = sdk.get_secrets([pair["record"]])[0]
    assert again.field("password", single=True) == "written-through-b"
    assert again.revision > before
    # A file uploaded through B downloads through A (shared files directory).
    rc = RecordCreate("login", "With file")
    rc.fields = [RecordField(field_type="login", value=["x"])]
    point_at(sdk, pair["b"])
    uid = sdk.create_secret(pair["folder"], rc)
    created = sdk.get_secrets([uid])[0]
    path = pair["b"].workdir / "payload.bin"
    path.write_bytes(os.urandom(50_000))
    sdk.upload_file_path(created, str(path))
    point_at(sdk, pair["a"])
    files = sdk.get_secrets([uid])[0].files
    assert len(files) == 1 and files[0].get_file_data() == path.read_bytes()


def test_one_token_sent_to_both_instances_at_once_binds_exactly_once(pair):
    for _ in range(3):
        config = token(pair)
        devices = [sdk_on(config, pair["a"]), sdk_on(config, pair["b"])]
        barrier = threading.Barrier(2)
        outcomes = [None, None]

        def bind(i):
            barrier.wait()
            try:
                devices[i].get_secrets()
                outcomes[i] = "bound"
            except KeeperError as err:
                outcomes[i] = str(err)

        threads = [threading.Thread(target=bind, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert outcomes.count("bound") == 1, outcomes
        loser = [o for o in outcomes if o != "bound"][0]
        assert loser.startswith("Error: access_denied"), loser


def test_concurrent_saves_across_instances_have_exactly_one_winner(pair):
    uid = pair["record"]
    sdks = []
    for i in range(20):
        sdk = sdk_on(token(pair), pair["a"] if i % 2 else pair["b"])
        sdk.get_secrets([uid])
        sdks.append(sdk)
    records = [sdk.get_secrets([uid])[0] for sdk in sdks]
    revision = records[0].revision
    assert all(r.revision == revision for r in records)
    barrier = threading.Barrier(len(sdks))
    results = [None] * len(sdks)

    def save(i):
        records[i].field("password", f"winner-{i}")
        barrier.wait()
        try:
            sdks[i].save(records[i])
            results[i] = "ok"
        except KeeperError as err:
            results[i] = str(err)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(sdks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    winners = [i for i, r in enumerate(results) if r == "ok"]
    assert len(winners) == 1, results
    assert all(r.startswith("Error: out_of_sync") for r in results if r != "ok"), results
    assert password(sdks[0], uid) == f"winner-{winners[0]}"
    assert password(sdks[1], uid) == f"winner-{winners[0]}"


def test_killing_one_instance_mid_traffic_loses_nothing_acknowledged(pair):
    a, b = pair["a"], pair["b"]
    acknowledged = {}  # uid -> title, for every create that returned
    lock = threading.Lock()
    stop = threading.Event()
    errors_after_kill = {"a": 0, "b": 0}
    killed = threading.Event()

    def writer(name: str, server: CofferServer):
        sdk = sdk_on(token(pair), server)
        sdk.get_secrets([pair["record"]])
        n = 0
        while not stop.is_set():
            n += 1
            title = f"{name}-{n}"
            rc = RecordCreate("login", title)
            rc.fields = [RecordField(field_type="login", value=[title])]
            try:
                uid = sdk.create_secret(pair["folder"], rc)
            except Exception:  # noqa: BLE001 - a killed instance fails in many ways
                if killed.is_set():
                    errors_after_kill[name] += 1
                    time.sleep(0.05)
                    continue
                raise
            with lock:
                acknowledged[uid] = title

    # The owner CLI talks to A: make the reader's token while A is up.
    reader_config = token(pair)
    threads = [
        threading.Thread(target=writer, args=("a", a)),
        threading.Thread(target=writer, args=("b", b)),
    ]
    for t in threads:
        t.start()
    time.sleep(2.0)
    killed.set()
    a.kill()
    with lock:
        at_kill = len(acknowledged)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(60)
    with lock:
        total = dict(acknowledged)
    assert len([t for t in total.values() if t.startswith("b-")]) > 0
    assert len(total) > at_kill, "B kept acknowledging writes after A was killed"
    assert errors_after_kill["b"] == 0, "B must not fail because A died"
    # Everything acknowledged by either instance is readable through B, intact.
    reader = sdk_on(reader_config, b)
    records = {r.uid: r for r in reader.get_secrets(list(total))}
    assert set(records) == set(total)
    for uid, title in total.items():
        assert records[uid].title == title
        assert records[uid].field("login", single=True) == title
    # A restarts on the same database and serves again.
    a.start(expect_setup_code=False)
    again = sdk_on(token(pair), a)
    assert len(again.get_secrets(list(total)[:5])) == min(5, len(total))
