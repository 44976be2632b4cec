"""Concurrent writers, a crash in the middle of writes, and uploads that are too big or cut off.

All clients are the unmodified official Python SDK (keeper-secrets-manager-core 17.3.0).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, List, Optional
from unittest import mock
from urllib.parse import urlsplit

import pytest
import requests
from keeper_secrets_manager_core import SecretsManager
from keeper_secrets_manager_core.dto.dtos import KeeperFileUpload, RecordCreate, RecordField
from keeper_secrets_manager_core.dto.payload import CreateOptions

from ksm_helpers import (
    bound_client,
    canonical,
    expect_error,
    fetch,
    file_ref,
    file_uids,
    incoming_files,
    owner_record,
    owner_records_in,
    stored_objects,
)

GCM_OVERHEAD = 28
THREAD_JOIN_SECONDS = 60


def join_all(threads: List[threading.Thread]) -> None:
    deadline_at = time.monotonic() + THREAD_JOIN_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline_at - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still blocked in SDK calls after {THREAD_JOIN_SECONDS} s: {stuck}"


def login_create(title: str, password: str) -> RecordCreate:
    rc = RecordCreate("login", title)
    rc.fields = [
        RecordField(field_type="login", value=[title.lower().replace(" ", "-")]),
        RecordField(field_type="password", value=[password]),
    ]
    rc.custom = [RecordField(field_type="text", value=[password[::-1]], label="Reversed")]
    rc.notes = f"notes of {title}"
    return rc


# ---------------------------------------------------------------------------------------------
# 20 devices race on one record
# ---------------------------------------------------------------------------------------------

RACERS = 20


@pytest.fixture(scope="module")
def race(coffer_server, owner):
    server = coffer_server
    folder = server.cli_uid("vault", "folder", "create", positional=["Race"])
    target = server.cli_uid(
        "vault", "record", "add", f"--folder={folder}", "--type", "login", "--title", "Race Target",
        "--field", "login=racer", "--field", "password=start",
    )
    app = server.cli_uid("vault", "app", "create", positional=["Racers"])
    server.cli("vault", "app", "share", "--editable", positional=[app, folder])
    clients = [bound_client(server, app, f"racer-{i}") for i in range(RACERS)]
    return SimpleNamespace(server=server, folder=folder, target=target, clients=clients)


def run_at_once(clients: List[SecretsManager], action: Callable[[int, SecretsManager], Any]) -> List[Any]:
    """Run action(i, client) in one thread per client, released together by a barrier.
    Each result is ("ok", value) or ("error", exception)."""
    barrier = threading.Barrier(len(clients))
    results: List[Any] = [None] * len(clients)

    def worker(i: int, sdk: SecretsManager) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = ("ok", action(i, sdk))
        except BaseException as err:  # noqa: BLE001 - reported by the test
            results[i] = ("error", err)

    threads = [
        threading.Thread(target=worker, args=(i, sdk), name=f"racer-{i}", daemon=True)
        for i, sdk in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    join_all(threads)
    return results


def test_concurrent_saves_at_the_same_revision_exactly_one_wins(race):
    uid = race.target
    records = [fetch(sdk, uid) for sdk in race.clients]
    start_revision = records[0].revision
    assert {r.revision for r in records} == {start_revision}
    revisions_before = len(race.server.cli("vault", "record", "history", positional=[uid])["revisions"])
    for i, rec in enumerate(records):
        rec.field("password", value=f"racer-{i}-wins")

    results = run_at_once(race.clients, lambda i, sdk: sdk.save(records[i]))

    winners = [i for i, (status, _) in enumerate(results) if status == "ok"]
    assert len(winners) == 1, f"{len(winners)} saves succeeded: {results}"
    (winner,) = winners
    for i, (status, err) in enumerate(results):
        if i == winner:
            continue
        text = str(err)
        assert text.startswith("Error: out_of_sync, message="), f"racer {i}: {type(err).__name__}: {text}"
        assert f"Record {uid} is out of sync" in text, text

    stored = fetch(race.clients[0], uid)
    assert stored.password == f"racer-{winner}-wins"
    assert canonical(stored.dict) == canonical(records[winner].dict)
    assert stored.revision > start_revision
    history = race.server.cli("vault", "record", "history", positional=[uid])["revisions"]
    assert len(history) == revisions_before + 1, "exactly one of the saves may have been stored"
    assert canonical(owner_record(race.server, uid)["data"]) == canonical(records[winner].dict)


def test_concurrent_creates_all_land(race):
    folders = race.clients[0].get_folders()
    tag = uuid.uuid4().hex[:8]
    creates = [login_create(f"Concurrent {tag} {i}", f"pass-{tag}-{i}") for i in range(RACERS)]
    results = run_at_once(
        race.clients,
        lambda i, sdk: sdk.create_secret_with_options(CreateOptions(race.folder, None), creates[i], folders),
    )
    errors = [(i, r) for i, (status, r) in enumerate(results) if status != "ok"]
    assert not errors, errors
    uids = [r for _, r in results]
    assert len(set(uids)) == RACERS

    resp = race.clients[-1].get_secrets(uids, full_response=True)
    assert resp.bad_records == [] and resp.bad_folders == []
    got = {r.uid: r for r in resp.records}
    assert set(got) == set(uids)
    for i, uid in enumerate(uids):
        assert canonical(got[uid].dict) == canonical(creates[i].to_dict()), i
    owned = owner_records_in(race.server, race.folder)
    for i, uid in enumerate(uids):
        assert canonical(owned[uid]["data"]) == canonical(creates[i].to_dict()), i


def test_force_delete_racing_creates_leaves_no_orphans(race):
    """One device keeps creating records and sub-folders in a folder while another force-deletes
    it: each create lands before the delete (and is deleted with the folder) or is refused with
    a clean bad_request; nothing is left pointing into the deleted tree."""
    creator_sdk, deleter_sdk = race.clients[0], race.clients[1]
    created, refused, deleted = [], [], []
    for round_no in range(8):
        doomed = creator_sdk.create_folder(CreateOptions(race.folder, None), f"Racing {round_no}")
        folders = creator_sdk.get_folders()
        stop = threading.Event()

        def create_loop() -> None:
            n = 0
            while not stop.is_set() and n < 40:
                rc = login_create(f"Racing {round_no} {n}", f"racing-{round_no}-{n}")
                for kind, call in (
                    ("record", lambda: creator_sdk.create_secret_with_options(
                        CreateOptions(race.folder, doomed), rc, folders)),
                    ("folder", lambda: creator_sdk.create_folder(
                        CreateOptions(race.folder, doomed), f"Sub {n}", folders)),
                ):
                    try:
                        created.append((kind, call()))
                    except Exception as err:  # noqa: BLE001 - checked below
                        refused.append((kind, err))
                n += 1

        thread = threading.Thread(target=create_loop, name=f"creator-{round_no}", daemon=True)
        thread.start()
        time.sleep(0.15)
        results = deleter_sdk.delete_folder([doomed], force_deletion=True)
        stop.set()
        join_all([thread])
        deleted.append(doomed)
        assert [(r["folderUid"], r["responseCode"]) for r in results] == [(doomed, "ok")], results

    assert created, "no create landed before the deletes: the race was not exercised"
    for kind, err in refused:
        assert str(err).startswith("Error: bad_request, message="), f"{kind}: {type(err).__name__}: {err}"

    folders = {f.folder_uid: f.parent_uid for f in deleter_sdk.get_folders()}
    assert not set(deleted) & set(folders)
    for uid, parent in folders.items():
        assert parent == "" or parent in folders, f"folder {uid} hangs from a deleted parent {parent}"
    for kind, uid in created:
        if kind == "folder":
            assert uid not in folders, f"sub-folder {uid} survived the force delete of its parent"
    resp = deleter_sdk.get_secrets(full_response=True)
    assert resp.bad_records == [] and resp.bad_folders == []
    visible_uids = {r.uid for r in resp.records}
    for kind, uid in created:
        if kind == "record":
            assert uid not in visible_uids, f"record {uid} survived the force delete of its folder"
    for rec in resp.records:
        assert rec.inner_folder_uid is None or rec.inner_folder_uid in folders, rec.uid
    owned = owner_records_in(race.server, race.folder)
    assert set(owned) == visible_uids


# ---------------------------------------------------------------------------------------------
# SIGKILL in the middle of writes
# ---------------------------------------------------------------------------------------------

WRITE_SECONDS = 2.0


@dataclass
class Writer:
    """One writer thread with its own device; what it got acknowledged, and what was in flight."""

    name: str
    kind: str  # "save", "create" or "upload"
    sdk: SecretsManager
    target: Optional[str] = None  # record uid (save, upload)
    acked: List[Any] = field(default_factory=list)
    in_flight: Any = None
    last_revision: int = 0  # saves: the revision read back after the last acknowledged one
    error: Optional[BaseException] = None
    error_at: Optional[float] = None


def saver(w: Writer, stop: threading.Event, round_no: int) -> None:
    rec = fetch(w.sdk, w.target)
    n = 0
    while not stop.is_set():
        value = f"{w.name}-r{round_no}-{n}"
        rec.field("password", value=value)
        w.in_flight = value
        w.sdk.save(rec)
        w.acked.append(value)
        w.in_flight = None
        rec = fetch(w.sdk, w.target)
        if rec.password != value:
            raise AssertionError(f"{w.name}: read {rec.password!r} right after saving {value!r}")
        w.last_revision = rec.revision
        n += 1


def creator(w: Writer, stop: threading.Event, round_no: int, root: str, sub: str) -> None:
    folders = w.sdk.get_folders()
    n = 0
    while not stop.is_set():
        title = f"{w.name} r{round_no} #{n}"
        rc = login_create(title, f"{w.name}-{round_no}-{n}-pass")
        where = sub if n % 2 else None
        w.in_flight = (title, rc.to_dict(), where)
        uid = w.sdk.create_secret_with_options(CreateOptions(root, where), rc, folders)
        w.in_flight = None
        w.acked.append((uid, title, rc.to_dict(), where))
        n += 1


def uploader(w: Writer, stop: threading.Event, round_no: int) -> None:
    rec = fetch(w.sdk, w.target)
    n = 0
    while not stop.is_set():
        data = os.urandom(1000 + 37 * n)
        w.in_flight = data
        file_uid = w.sdk.upload_file(
            rec, KeeperFileUpload(f"r{round_no}-{n}.bin", f"upload {n}", "application/octet-stream", data)
        )
        w.in_flight = None
        w.acked.append((file_uid, data))
        rec = fetch(w.sdk, w.target)
        n += 1


def run_writer(w: Writer, body: Callable[[], None]) -> None:
    try:
        body()
    except BaseException as err:  # noqa: BLE001 - checked by the test
        w.error = err
        w.error_at = time.monotonic()


@pytest.fixture(scope="module")
def crash(start_extra_server):
    server = start_extra_server()
    root = server.cli_uid("vault", "folder", "create", positional=["Crash"])
    sub = server.cli_uid("vault", "folder", "create", f"--parent={root}", positional=["Crash Sub"])
    targets = {}
    for key in ("save-0", "save-1", "save-2", "upload-0"):
        targets[key] = server.cli_uid(
            "vault", "record", "add", f"--folder={root}", "--type", "login", "--title", f"Target {key}",
            "--field", f"login={key}", "--field", "password=initial",
        )
    app = server.cli_uid("vault", "app", "create", positional=["Crash Writers"])
    server.cli("vault", "app", "share", "--editable", positional=[app, root])
    writers = [Writer(k, "save", bound_client(server, app, k), targets[k]) for k in ("save-0", "save-1", "save-2")]
    writers += [Writer(k, "create", bound_client(server, app, k)) for k in ("create-0", "create-1")]
    writers.append(Writer("upload-0", "upload", bound_client(server, app, "upload-0"), targets["upload-0"]))
    return SimpleNamespace(server=server, root=root, sub=sub, seeded=set(targets.values()), writers=writers)


def incoming_dirs(server) -> set:
    root = server.data_dir / "files" / "incoming"
    return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()


def crash_round(crash, round_no: int) -> None:
    """Write for WRITE_SECONDS, SIGKILL the server, restart it on the same data dir and port,
    then check every acknowledged write and that nothing is half-written."""
    server = crash.server
    stop = threading.Event()
    for w in crash.writers:
        w.acked, w.in_flight, w.last_revision, w.error, w.error_at = [], None, 0, None, None
    bodies = {
        "save": lambda w: (lambda: saver(w, stop, round_no)),
        "create": lambda w: (lambda: creator(w, stop, round_no, crash.root, crash.sub)),
        "upload": lambda w: (lambda: uploader(w, stop, round_no)),
    }
    threads = [
        threading.Thread(target=run_writer, args=(w, bodies[w.kind](w)), name=w.name, daemon=True)
        for w in crash.writers
    ]
    for thread in threads:
        thread.start()
    time.sleep(WRITE_SECONDS)
    killed_at = time.monotonic()
    server.kill()  # SIGKILL: no graceful shutdown, in-flight requests die with the process
    stop.set()
    join_all(threads)

    for w in crash.writers:
        assert w.acked, f"{w.name}: nothing was acknowledged in {WRITE_SECONDS} s (error: {w.error!r})"
        # A writer may only have failed because the server died under it.
        if w.error is not None:
            assert isinstance(w.error, requests.RequestException), (
                f"{w.name} failed with {type(w.error).__name__}: {w.error}"
            )
            assert w.error_at >= killed_at, f"{w.name} failed before the kill: {w.error!r}"

    dirs_before_restart = incoming_dirs(server)
    server.start(expect_setup_code=False)

    reader = crash.writers[0].sdk
    resp = reader.get_secrets(full_response=True)
    # Nothing half-written: every record and folder object decrypts and parses.
    assert resp.bad_records == [], resp.bad_records
    assert resp.bad_folders == [], resp.bad_folders
    records = {r.uid: r for r in resp.records}

    for w in crash.writers:
        if w.kind == "save":
            # The last acknowledged value, or the one whose save was cut off by the kill.
            rec = records[w.target]
            allowed = {w.acked[-1]} | ({w.in_flight} if w.in_flight is not None else set())
            assert rec.password in allowed, (w.name, rec.password, allowed)
            assert rec.revision >= w.last_revision, (w.name, rec.revision, w.last_revision)
        elif w.kind == "create":
            for uid, title, expected, where in w.acked:
                assert uid in records, f"{w.name}: acknowledged record {title!r} ({uid}) is gone"
                assert canonical(records[uid].dict) == canonical(expected), (w.name, title)
                assert records[uid].inner_folder_uid == where, (w.name, title)
        else:
            rec = records[w.target]
            files = {f.f["fileUid"]: f for f in rec.files}
            # Record data and file list are committed together.
            assert sorted(file_ref(rec)) == sorted(files), (file_ref(rec), sorted(files))
            for file_uid, data in w.acked:
                assert file_uid in files, f"acknowledged upload {file_uid} is gone"
                assert files[file_uid].get_file_data() == data, file_uid
            extra = set(files) - {u for u, _ in w.acked} - crash.files_before
            # Only the upload in flight at the kill may have landed, and then completely.
            assert len(extra) <= 1, extra
            for file_uid in extra:
                assert w.in_flight is not None and files[file_uid].get_file_data() == w.in_flight
            crash.files_before |= set(files)

    # Records nobody acknowledged: at most the one create in flight per creator, complete.
    acked_uids = {a[0] for w in crash.writers if w.kind == "create" for a in w.acked}
    unexplained = set(records) - crash.seeded - acked_uids - crash.created_before
    in_flight = {w.in_flight[0]: w.in_flight for w in crash.writers if w.kind == "create" and w.in_flight}
    for uid in unexplained:
        title = records[uid].title
        assert title in in_flight, f"record {uid} ({title!r}) was never attempted in this round"
        assert canonical(records[uid].dict) == canonical(in_flight[title][1]), title
    crash.created_before |= set(records) - crash.seeded

    # The owner decrypts all of it too (its own key copies of device-created records).
    owned = owner_records_in(server, crash.root)
    assert set(owned) == set(records)
    for uid, rec in records.items():
        assert canonical(owned[uid]["data"]) == canonical(rec.dict), uid
        assert owned[uid]["revision"] == rec.revision, uid

    # Stored contents: one per visible file, except possibly the upload that was in flight,
    # whose content may have been moved into place before its commit (removed by the upload
    # clean-up when its announcement expires).
    visible_files = {u for rec in records.values() for u in file_uids(rec)}
    objects = stored_objects(server)
    assert visible_files <= set(objects), visible_files - set(objects)
    assert len(set(objects) - visible_files) <= round_no, set(objects) - visible_files
    # Each instance receives into its own FILES/incoming/<instance>/ (several instances may share
    # the files directory), so a killed instance's partial upload stays there until a later
    # start removes incoming directories untouched for a day: at most the one upload in flight
    # per kill, and none in the directory of the running instance.
    leftovers = incoming_files(server)
    assert len(leftovers) <= round_no, leftovers
    live = incoming_dirs(server) - dirs_before_restart
    assert len(live) == 1, (live, dirs_before_restart)
    assert not [p for p in leftovers if p.split("/")[0] in live], leftovers

    # The restarted server takes writes again.
    for w in crash.writers:
        if w.kind == "save":
            rec = fetch(w.sdk, w.target)
            rec.field("password", value=f"{w.name}-after-restart-{round_no}")
            w.sdk.save(rec)
            assert fetch(w.sdk, w.target).password == f"{w.name}-after-restart-{round_no}"


def test_sigkill_during_writes_loses_no_acknowledged_write(crash):
    crash.created_before, crash.files_before = set(), set()
    for round_no in (1, 2):
        crash_round(crash, round_no)


# ---------------------------------------------------------------------------------------------
# Uploads that are too big or cut off (server with --max-file-size 64K)
# ---------------------------------------------------------------------------------------------

MAX_FILE = 64 * 1024  # encrypted bytes


@pytest.fixture(scope="module")
def small(limited_server):
    server = limited_server
    folder = server.cli_uid("vault", "folder", "create", positional=["Upload Limits"])
    records = {}
    for key in ("oversized", "boundary", "truncated", "two_uploads", "deleted"):
        records[key] = server.cli_uid(
            "vault", "record", "add", f"--folder={folder}", "--type", "login", "--title",
            f"Upload {key}", "--field", f"login={key}",
        )
    app = server.cli_uid("vault", "app", "create", positional=["Upload Limits App"])
    server.cli("vault", "app", "share", "--editable", positional=[app, folder])
    return SimpleNamespace(server=server, records=records, sdk=bound_client(server, app, "uploads"))


def test_oversized_upload_is_refused_and_leaves_nothing(small):
    uid = small.records["oversized"]
    before = fetch(small.sdk, uid)
    objects = stored_objects(small.server)

    expect_error(
        lambda: small.sdk.upload_file(
            fetch(small.sdk, uid), KeeperFileUpload("big.bin", "big", "application/octet-stream", os.urandom(100_000))
        ),
        "too_large", "upload of 100 kB with --max-file-size 64K",
    )
    after = fetch(small.sdk, uid)
    assert after.files == []
    assert after.revision == before.revision
    assert canonical(after.dict) == canonical(before.dict)
    assert stored_objects(small.server) == objects
    assert incoming_files(small.server) == []


def test_upload_size_limit_is_exact(small):
    uid = small.records["boundary"]
    # One byte over: refused at add_file.
    expect_error(
        lambda: small.sdk.upload_file(
            fetch(small.sdk, uid),
            KeeperFileUpload("over.bin", "over", "application/octet-stream", os.urandom(MAX_FILE - GCM_OVERHEAD + 1)),
        ),
        "too_large", "upload one byte over --max-file-size",
    )
    assert fetch(small.sdk, uid).files == []
    # Exactly the limit (encrypted): accepted and intact.
    data = os.urandom(MAX_FILE - GCM_OVERHEAD)
    file_uid = small.sdk.upload_file(
        fetch(small.sdk, uid), KeeperFileUpload("exact.bin", "exact", "application/octet-stream", data)
    )
    rec = fetch(small.sdk, uid)
    assert file_uids(rec) == [file_uid]
    assert rec.files[0].get_file_data() == data
    assert stored_objects(small.server)[file_uid] == MAX_FILE


def announce_only(sdk: SecretsManager, rec, upload: KeeperFileUpload) -> SimpleNamespace:
    """Call the SDK's upload_file but stop after add_file: the SDK's upload step (the private
    static method `SecretsManager.__upload_file_function`) is replaced by one that only records
    the announced URL, parameters and encrypted body."""
    captured = {}

    def capture(url, upload_parameters, encrypted_file_data, verify_ssl_certs=True, proxy_url=None):
        captured.update(url=url, parameters=upload_parameters, body=encrypted_file_data)
        return {"isOk": True, "statusCode": 204, "data": ""}

    with mock.patch.object(SecretsManager, "_SecretsManager__upload_file_function", staticmethod(capture)):
        file_uid = sdk.upload_file(rec, upload)
    assert set(captured) == {"url", "parameters", "body"}, "the SDK did not reach its upload step"
    return SimpleNamespace(file_uid=file_uid, **captured)


def multipart(parameters: dict, body: bytes, boundary: str) -> bytes:
    parts = []
    for name, value in parameters.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n\r\n'.encode()
        + body
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def send_cut_off(server, url: str, payload: bytes, boundary: str) -> None:
    """POST with a Content-Length for all of `payload` but send only half of it, then close
    the connection (a client that dies mid-upload)."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(server.cert_path))
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            head = (
                f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode()
            tls.sendall(head + payload[: len(payload) // 2])


def test_truncated_and_overlong_upload_bodies_are_refused(small, tmp_path):
    server = small.server
    uid = small.records["truncated"]
    before = fetch(small.sdk, uid)
    data = os.urandom(20_000)
    ann = announce_only(small.sdk, fetch(small.sdk, uid), KeeperFileUpload("t.bin", "t", "application/octet-stream", data))
    assert ann.url.startswith("https://")
    assert len(ann.body) == len(data) + GCM_OVERHEAD
    assert all(isinstance(v, str) for v in ann.parameters.values())

    def unchanged():
        now = fetch(small.sdk, uid)
        assert now.files == [] and now.revision == before.revision
        assert canonical(now.dict) == canonical(before.dict)
        assert ann.file_uid not in stored_objects(server)

    unchanged()  # announced, not uploaded: nothing visible yet

    for what, body in (("fewer bytes", ann.body[:-100]), ("more bytes", ann.body + os.urandom(100))):
        resp = requests.post(ann.url, data=ann.parameters, files={"file": body}, timeout=60)
        assert resp.status_code == 400, (what, resp.status_code, resp.text)
        assert resp.json()["error"] == "bad_request", (what, resp.text)
        unchanged()
        assert incoming_files(server) == [], what

    # A client that dies half-way through the body.
    boundary = "coffer" + uuid.uuid4().hex
    send_cut_off(server, ann.url, multipart(ann.parameters, ann.body, boundary), boundary)
    for _ in range(50):
        if incoming_files(server) == []:
            break
        time.sleep(0.1)
    assert incoming_files(server) == [], "a cut-off upload left a partial file behind"
    unchanged()

    # Coffer's choice: failed attempts do not use up the announcement (it stays valid until it
    # expires, 15 min); a complete body of exactly fileSize is then accepted once, with the
    # announced successStatusCode, and the link is spent.
    resp = requests.post(ann.url, data=ann.parameters, files={"file": ann.body}, timeout=60)
    assert resp.status_code == 204, (resp.status_code, resp.text)
    rec = fetch(small.sdk, uid)
    assert file_uids(rec) == [ann.file_uid]
    assert rec.files[0].get_file_data() == data
    assert rec.revision > before.revision
    assert stored_objects(server)[ann.file_uid] == len(ann.body)

    resp = requests.post(ann.url, data=ann.parameters, files={"file": ann.body}, timeout=60)
    assert resp.status_code == 404, (resp.status_code, resp.text)
    assert resp.json()["error"] == "not_found", resp.text
    assert file_uids(fetch(small.sdk, uid)) == [ann.file_uid]


def test_second_pending_upload_to_the_same_revision_is_refused(small):
    """Two uploads announced at the same record revision: the first to complete wins; the
    second one's owner-record data lacks the first file's fileRef, so committing it would drop
    that attachment from the record. It must be refused (out_of_sync) and leave nothing."""
    server = small.server
    uid = small.records["two_uploads"]
    base = fetch(small.sdk, uid)
    one, two = os.urandom(3000), os.urandom(4000)
    first = announce_only(small.sdk, fetch(small.sdk, uid), KeeperFileUpload("1.bin", "1", "application/octet-stream", one))
    second = announce_only(small.sdk, fetch(small.sdk, uid), KeeperFileUpload("2.bin", "2", "application/octet-stream", two))

    resp = requests.post(first.url, data=first.parameters, files={"file": first.body}, timeout=60)
    assert resp.status_code == 204, resp.text
    resp = requests.post(second.url, data=second.parameters, files={"file": second.body}, timeout=60)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert resp.json()["error"] == "out_of_sync", resp.text
    assert f"Record {uid} is out of sync" in resp.json()["message"], resp.text

    rec = fetch(small.sdk, uid)
    assert file_uids(rec) == [first.file_uid]
    assert file_ref(rec) == [first.file_uid]
    assert rec.files[0].get_file_data() == one
    assert rec.revision > base.revision
    objects = stored_objects(server)
    assert first.file_uid in objects
    assert second.file_uid not in objects, "the refused upload's content was kept"
    assert incoming_files(server) == []


def test_upload_to_a_record_deleted_meanwhile_is_refused(small):
    server = small.server
    uid = small.records["deleted"]
    ann = announce_only(
        small.sdk, fetch(small.sdk, uid), KeeperFileUpload("d.bin", "d", "application/octet-stream", b"x" * 500)
    )
    results = small.sdk.delete_secret([uid])
    assert [(r["recordUid"], r["responseCode"]) for r in results] == [(uid, "ok")]

    resp = requests.post(ann.url, data=ann.parameters, files={"file": ann.body}, timeout=60)
    assert resp.status_code == 404, (resp.status_code, resp.text)
    assert resp.json()["error"] == "not_found", resp.text
    assert small.sdk.get_secrets([uid]) == []
    assert ann.file_uid not in stored_objects(server)
    assert incoming_files(server) == []
