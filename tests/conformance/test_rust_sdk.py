"""Conformance of a real Coffer server with the official KSM Rust SDK (17.3.0).

The unmodified `keeper-secrets-manager-core` crate is driven one operation per process by
`official_ksm` (`crates/coffer-sdk/bench/src/ksm.rs`, a workspace of its own; built by
`cargo build --manifest-path crates/coffer-sdk/bench/Cargo.toml`, which scripts/test.sh does).
The device keeps its keys in the SDK's own config file, seeded with the one-time config that
`coffer vault client add` prints; the first call binds it.

The Rust SDK drops any port from the host name (PROTOCOL.md §2.2), so these tests run their own
server on 127.0.0.1:443, which needs root (as CI runs). It trusts only the system's roots, so it
runs with SSL_CERT_FILE pointing at the server's certificate: verification stays on.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import REPO_ROOT, CofferServer, port_accepts
from ksm_helpers import (
    add_client,
    canonical,
    driver_fails,
    owner_download,
    owner_folders,
    owner_record,
    owner_records_in,
    rfc6238,
    run_driver,
)

DRIVER = Path(
    os.environ.get("OFFICIAL_KSM", REPO_ROOT / "crates" / "coffer-sdk" / "bench" / "target" / "debug" / "official_ksm")
)
TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
TOTP_URI = f"otpauth://totp/Coffer:rust@example.com?secret={TOTP_SECRET}&issuer=Coffer&digits=6&period=30"
ATTACHMENT_SIZE = 120_000
UPLOAD_SIZE = 2 * 1024 * 1024 + 5


def rust(server, config: Path, operation: str, **args: Any) -> Any:
    """Runs one official Rust SDK operation for the device whose config is `config`."""
    if not DRIVER.is_file():
        pytest.fail(
            f"{DRIVER} is missing: build it with `cargo build --manifest-path "
            "crates/coffer-sdk/bench/Cargo.toml` (scripts/test.sh does) or set OFFICIAL_KSM"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSM_")}
    env["SSL_CERT_FILE"] = str(server.cert_path)
    env.pop("SSL_CERT_DIR", None)
    return run_driver([str(DRIVER), str(config), operation, json.dumps(args)], env, f"Rust {operation}")


def rust_fails(server, config: Path, operation: str, contains: str, **args: Any) -> str:
    return driver_fails(lambda: rust(server, config, operation, **args), contains, f"Rust {operation}")


def field_values(data: dict, field_type: str) -> list:
    return next(f["value"] for f in data["fields"] if f["type"] == field_type)


def device(server, app_uid: str, config: Path, name: str) -> Path:
    """A new device: the one-time config written to the SDK's config file, bound by a first call."""
    config.write_text(base64.b64decode(add_client(server, app_uid, name)).decode())
    config.chmod(0o600)
    rust(server, config, "get_secrets")
    return config


@pytest.fixture(scope="module")
def server443(coffer_server, tmp_path_factory):
    """A server of its own on 127.0.0.1:443 (the session server's certificate, a new database)."""
    if port_accepts(443):
        pytest.fail("127.0.0.1:443 is in use: the official Rust SDK can only reach a server on port 443")
    tls = coffer_server.cert_path.parent
    server = CofferServer(
        tmp_path_factory.mktemp("coffer-443"),
        ("--tls-cert", str(tls / "cert.pem"), "--tls-key", str(tls / "key.pem")),
    )
    server.port = 443
    server.host = "127.0.0.1:443"
    server.url = "https://127.0.0.1:443"
    server.cert_path = coffer_server.cert_path
    try:
        server.start()  # fails with the server's log if it cannot bind 443 (not root)
        server.register_owner()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rv(server443, tmp_path_factory):
    server = server443
    work = tmp_path_factory.mktemp("rust")
    shared = server.cli_uid("vault", "folder", "create", positional=["Rust Shared"])
    inner = server.cli_uid("vault", "folder", "create", f"--parent={shared}", positional=["Rust Inner"])
    login = server.cli_uid(
        "vault", "record", "add", f"--folder={shared}", "--type", "login", "--title", "Rust Login",
        "--field", "login=rust@example.com", "--field", "password=rust-pass-1", "--field",
        "url=https://rust.example.com", "--field", f"oneTimeCode={TOTP_URI}",
        "--custom", "Environment=prod", "--notes", "from the owner",
    )
    rotate = server.cli_uid(
        "vault", "record", "add", f"--folder={inner}", "--type", "login", "--title", "Rust Rotate",
        "--field", "login=rotate@example.com", "--field", "password=rotate-0",
    )
    attachment = os.urandom(ATTACHMENT_SIZE)
    (work / "attachment.bin").write_bytes(attachment)
    file_uid = server.cli_uid("vault", "file", "attach", positional=[login, str(work / "attachment.bin")])
    app = server.cli_uid("vault", "app", "create", positional=["Rust App"])
    server.cli("vault", "app", "share", "--editable", positional=[app, shared])
    other = server.cli_uid("vault", "folder", "create", positional=["Rust Not Shared"])
    hidden = server.cli_uid(
        "vault", "record", "add", f"--folder={other}", "--type", "login", "--title", "Rust Hidden",
        "--field", "login=hidden@example.com",
    )
    return SimpleNamespace(
        server=server,
        work=work,
        app=app,
        folders={"shared": shared, "inner": inner, "other": other},
        records={"login": login, "rotate": rotate, "hidden": hidden},
        attachment=attachment,
        file_uid=file_uid,
        config=device(server, app, work / "client-config.json", "rust-device"),
    )


def records_of(rv, **args) -> dict:
    return {r["uid"]: r for r in rust(rv.server, rv.config, "get_secrets", **args)}


# ---------------------------------------------------------------------------------------------
# Binding and reading
# ---------------------------------------------------------------------------------------------


def test_binding_keeps_the_device_keys_in_the_config(rv):
    config = json.loads(rv.config.read_text())
    for key in ("clientId", "privateKey", "appKey", "serverPublicKey", "serverPublicKeyId"):
        assert isinstance(config.get(key), str) and config[key], (key, sorted(config))
    assert "clientKey" not in config, "the one-time key is dropped once bound"


def test_sees_exactly_the_shared_records_with_their_data(rv):
    got = records_of(rv)
    assert set(got) == {rv.records["login"], rv.records["rotate"]}, sorted(got)
    for uid, rec in got.items():
        owned = owner_record(rv.server, uid)
        assert canonical(rec["data"]) == canonical(owned["data"]), uid
        assert rec["revision"] == owned["revision"], uid
        assert rec["isEditable"] is True, uid
    login = got[rv.records["login"]]
    assert (login["title"], login["type"]) == ("Rust Login", "login")
    assert login["folderUid"] == rv.folders["shared"]
    assert got[rv.records["rotate"]]["innerFolderUid"] == rv.folders["inner"]
    assert [(f["uid"], f["name"]) for f in login["files"]] == [(rv.file_uid, "attachment.bin")]


def test_filters_titles_folders_notation_and_totp(rv):
    assert list(records_of(rv, uids=[rv.records["rotate"]])) == [rv.records["rotate"]]
    assert records_of(rv, uids=[rv.records["hidden"]]) == {}
    assert list(records_of(rv, folders=[rv.folders["inner"]])) == [rv.records["rotate"]]
    assert rust(rv.server, rv.config, "by_title", title="Rust Login") == [rv.records["login"]]
    folders = {f["uid"]: f for f in rust(rv.server, rv.config, "get_folders")}
    assert folders[rv.folders["inner"]]["parentUid"] == rv.folders["shared"]
    assert folders[rv.folders["inner"]]["name"] == "Rust Inner"
    assert rv.folders["other"] not in folders

    uid = rv.records["login"]
    assert rust(rv.server, rv.config, "notation", notation=f"keeper://{uid}/field/password") == ["rust-pass-1"]
    assert rust(rv.server, rv.config, "notation", notation=f"keeper://{uid}/custom_field/Environment") == ["prod"]
    [uri] = rust(rv.server, rv.config, "notation", notation=f"keeper://{uid}/field/oneTimeCode")
    assert uri == TOTP_URI
    before = int(time.time())
    totp = rust(rv.server, rv.config, "totp", url=uri)
    after = int(time.time())
    assert totp["code"] in {rfc6238(TOTP_SECRET, before), rfc6238(TOTP_SECRET, after)}
    assert totp["period"] == 30


def test_download_is_byte_exact(rv):
    target = rv.work / "downloaded.bin"
    out = rust(rv.server, rv.config, "download", uid=rv.records["login"], fileUid=rv.file_uid, path=str(target))
    assert out == {"size": ATTACHMENT_SIZE}
    assert target.read_bytes() == rv.attachment


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_save_and_a_stale_save(rv):
    uid = rv.records["login"]
    before = owner_record(rv.server, uid)
    rust(rv.server, rv.config, "update", uid=uid, fields={"password": ["rust-pass-2"]}, notes="saved by Rust")
    after = owner_record(rv.server, uid)
    assert after["revision"] == before["revision"] + 1
    assert field_values(after["data"], "password") == ["rust-pass-2"]
    assert after["data"]["notes"] == "saved by Rust"
    assert after["data"]["custom"] == before["data"]["custom"]
    # The SDK reads back what it saved.
    assert field_values(records_of(rv, uids=[uid])[uid]["data"], "password") == ["rust-pass-2"]

    rust_fails(rv.server, rv.config, "update", "out_of_sync", uid=uid, fields={"password": ["stale"]},
               revision=before["revision"])
    assert owner_record(rv.server, uid) == after


def test_rotation_commit_and_rollback(rv):
    uid = rv.records["rotate"]
    rust(rv.server, rv.config, "update", uid=uid, fields={"password": ["rotate-1"]}, transaction="rotation")
    rust_fails(rv.server, rv.config, "update", "has an open transaction", uid=uid, fields={"password": ["x"]})
    rust(rv.server, rv.config, "complete", uid=uid, rollback=False)
    committed = owner_record(rv.server, uid)
    assert field_values(committed["data"], "password") == ["rotate-1"]

    rust(rv.server, rv.config, "update", uid=uid, fields={"password": ["rotate-2"]}, transaction="general")
    rust(rv.server, rv.config, "complete", uid=uid, rollback=True)
    rolled_back = owner_record(rv.server, uid)
    assert field_values(rolled_back["data"], "password") == ["rotate-1"]
    assert rolled_back["revision"] > committed["revision"]


def test_create_in_a_sub_folder_then_delete(rv):
    data = {
        "title": "Made By Rust",
        "type": "login",
        "fields": [
            {"type": "login", "value": ["made@example.com"]},
            {"type": "password", "value": ["made-pass"]},
        ],
        "custom": [{"type": "text", "label": "Origin", "value": ["cargo"]}],
        "notes": "created through the official Rust SDK",
    }
    # The Rust SDK walks up from the given folder to its shared folder (PROTOCOL.md §5.5).
    uid = rust(rv.server, rv.config, "create", folderUid=rv.folders["inner"], data=data)
    owned = owner_record(rv.server, uid)
    assert owned["folder_uid"] == rv.folders["inner"]
    assert owned["data"]["title"] == "Made By Rust"
    assert field_values(owned["data"], "password") == ["made-pass"]
    assert owned["data"]["notes"] == data["notes"]
    assert [(c["label"], c["value"]) for c in owned["data"]["custom"]] == [("Origin", ["cargo"])]
    assert uid in owner_records_in(rv.server, rv.folders["inner"])

    # The SDK reports the UIDs the server deleted ("ok"), each as JSON text.
    assert rust(rv.server, rv.config, "delete", uids=[uid, rv.records["hidden"]]) == json.dumps(uid)
    assert rv.records["hidden"] in owner_records_in(rv.server, rv.folders["other"]), "not the app's to delete"
    assert uid not in owner_records_in(rv.server, rv.folders["inner"])
    assert records_of(rv, uids=[uid]) == {}


def test_upload_round_trips(rv):
    uid = rv.records["rotate"]
    payload = os.urandom(UPLOAD_SIZE)
    (rv.work / "upload.bin").write_bytes(payload)
    file_uid = rust(rv.server, rv.config, "upload", uid=uid, path=str(rv.work / "upload.bin"), name="upload.bin",
                    title="Uploaded by Rust", type="application/octet-stream")
    files = {f["uid"]: f for f in records_of(rv, uids=[uid])[uid]["files"]}
    assert files[file_uid]["title"] == "Uploaded by Rust"
    out = rust(rv.server, rv.config, "download", uid=uid, fileUid=file_uid, path=str(rv.work / "back.bin"))
    assert out == {"size": UPLOAD_SIZE}
    assert (rv.work / "back.bin").read_bytes() == payload
    assert owner_download(rv.server, uid, file_uid, rv.work / "owner-copy.bin") == payload


def test_folders_create_rename_delete(rv):
    made = rust(rv.server, rv.config, "create_folder", folderUid=rv.folders["shared"],
                subFolderUid=rv.folders["inner"], name="Rust Made")
    assert owner_folders(rv.server)[made]["name"] == "Rust Made"
    rust(rv.server, rv.config, "update_folder", uid=made, name="Rust Renamed")
    assert owner_folders(rv.server)[made]["name"] == "Rust Renamed"
    folders = {f["uid"]: f for f in rust(rv.server, rv.config, "get_folders")}
    assert (folders[made]["name"], folders[made]["parentUid"]) == ("Rust Renamed", rv.folders["inner"])
    results = rust(rv.server, rv.config, "delete_folder", uids=[made], force=True)
    assert [(r["folderUid"], r["responseCode"]) for r in results] == [(made, "ok")], results
    assert made not in owner_folders(rv.server)


def test_writes_through_a_read_only_share_are_refused(rv):
    reader_app = rv.server.cli_uid("vault", "app", "create", positional=["Rust Reader"])
    rv.server.cli("vault", "app", "share", positional=[reader_app, rv.folders["shared"]])
    reader = device(rv.server, reader_app, rv.work / "reader.json", "rust-reader")
    uid = rv.records["login"]
    before = owner_record(rv.server, uid)
    rust_fails(rv.server, reader, "update", "access_denied", uid=uid, fields={"password": ["nope"]})
    assert owner_record(rv.server, uid) == before
    assert records_of(SimpleNamespace(server=rv.server, config=reader), uids=[uid])[uid]["isEditable"] is False
