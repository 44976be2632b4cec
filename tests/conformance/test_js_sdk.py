"""Conformance of a real Coffer server with the official KSM JavaScript SDK (17.5.0, Node.js).

The vault is provisioned through `coffer vault ...`; every check goes through the unmodified
`@keeper-security/secrets-manager-core` package (installed into `tests/js/node_modules` by
`npm ci --prefix tests/js`), driven one operation per process by `tests/js/ksm.cjs`. The device
is set up the way PROTOCOL.md §4.6 recommends for JS: `initializeStorage` with the client key and
the host (with its port), plus the server's public key and key id. Node trusts the server's
certificate through NODE_EXTRA_CA_CERTS; verification is never turned off.

What JS does differently from Python and is exercised here: its own config file format and
`initializeStorage` binding, `serverPublicKeyId` sent as a number, uploads sent with
`Transfer-Encoding: chunked` and no `Content-Length` (PROTOCOL.md §5.10), and its record,
folder and notation code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import REPO_ROOT
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

JS_DIR = REPO_ROOT / "tests" / "js"
DRIVER = JS_DIR / "ksm.cjs"

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TOTP_URI = f"otpauth://totp/Coffer:js@example.com?secret={TOTP_SECRET}&issuer=Coffer&digits=6&period=30"
ATTACHMENT_SIZE = 150_000
UPLOAD_SIZE = 3 * 1024 * 1024 + 17  # several chunks of Node's chunked encoding, not a round size


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is required for the JavaScript SDK tests (node not found on PATH)")
    if not (JS_DIR / "node_modules" / "@keeper-security" / "secrets-manager-core").is_dir():
        pytest.fail("the JavaScript SDK is not installed: run `npm ci --prefix tests/js` (scripts/test.sh does)")
    return found


def js(server, storage: Path, operation: str, **args: Any) -> Any:
    """Runs one JS SDK operation for the device whose config is `storage`; its result, or
    DriverError with the SDK's message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSM_")}
    env["NODE_EXTRA_CA_CERTS"] = str(server.cert_path)
    env.pop("NODE_TLS_REJECT_UNAUTHORIZED", None)
    argv = [node(), str(DRIVER), str(storage), operation, json.dumps(args)]
    return run_driver(argv, env, f"JS {operation}", cwd=JS_DIR)


def js_fails(server, storage: Path, operation: str, contains: str, **args: Any) -> str:
    """The operation must fail with a message containing `contains`."""
    return driver_fails(lambda: js(server, storage, operation, **args), contains, f"JS {operation}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def field_values(data: dict, field_type: str) -> list:
    return next(f["value"] for f in data["fields"] if f["type"] == field_type)


def device(server, app_uid: str, storage: Path, name: str) -> Path:
    """A new device of the app, set up through `initializeStorage` and bound by its first call."""
    info = js(server, storage, "init", config=add_client(server, app_uid, name))
    assert info["hostname"] == f"127.0.0.1:{server.port}", info
    js(server, storage, "get_secrets")
    return storage


@pytest.fixture(scope="module")
def jv(coffer_server, owner, tmp_path_factory):
    server = coffer_server
    work = tmp_path_factory.mktemp("js")
    shared = server.cli_uid("vault", "folder", "create", positional=["JS Shared"])
    inner = server.cli_uid("vault", "folder", "create", f"--parent={shared}", positional=["JS Inner"])
    login = server.cli_uid(
        "vault", "record", "add", f"--folder={shared}", "--type", "login", "--title", "JS Login",
        "--field", "login=js@example.com", "--field", "password=js-pass-1", "--field",
        "url=https://js.example.com", "--field", f"oneTimeCode={TOTP_URI}",
        "--custom", "Environment=prod", "--custom", "Tricky [label]=escaped", "--notes", "from the owner",
    )
    rotate = server.cli_uid(
        "vault", "record", "add", f"--folder={inner}", "--type", "login", "--title", "JS Rotate",
        "--field", "login=rotate@example.com", "--field", "password=rotate-0",
    )
    attachment = os.urandom(ATTACHMENT_SIZE)
    attachment_path = work / "attachment.bin"
    attachment_path.write_bytes(attachment)
    file_uid = server.cli_uid("vault", "file", "attach", positional=[login, str(attachment_path)])
    app = server.cli_uid("vault", "app", "create", positional=["JS App"])
    server.cli("vault", "app", "share", "--editable", positional=[app, shared])
    other = server.cli_uid("vault", "folder", "create", positional=["JS Not Shared"])
    hidden = server.cli_uid(
        "vault", "record", "add", f"--folder={other}", "--type", "login", "--title", "JS Hidden",
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
        storage=device(server, app, work / "client-config.json", "js-device"),
    )


def records_of(jv, **args) -> dict:
    answer = js(jv.server, jv.storage, "get_secrets", **args)
    return {r["uid"]: r for r in answer["records"]}


# ---------------------------------------------------------------------------------------------
# Binding and reading
# ---------------------------------------------------------------------------------------------


def test_binding_writes_a_private_config_with_the_app_key(jv):
    mode = stat.S_IMODE(jv.storage.stat().st_mode)
    assert mode == 0o600, oct(mode)
    config = json.loads(jv.storage.read_text())
    for key in ("clientId", "privateKey", "appKey", "hostname", "serverPublicKey", "serverPublicKeyId"):
        assert isinstance(config.get(key), str) and config[key], (key, sorted(config))
    assert config["hostname"] == f"127.0.0.1:{jv.server.port}"


def test_sees_exactly_the_shared_records_with_their_data(jv):
    answer = js(jv.server, jv.storage, "get_secrets")
    assert answer["appData"]["title"] == "JS App", answer["appData"]
    got = {r["uid"]: r for r in answer["records"]}
    assert set(got) == {jv.records["login"], jv.records["rotate"]}, sorted(got)
    for uid, rec in got.items():
        owned = owner_record(jv.server, uid)
        assert canonical(rec["data"]) == canonical(owned["data"]), uid
        assert rec["revision"] == owned["revision"], uid
    login = got[jv.records["login"]]
    assert field_values(login["data"], "password") == ["js-pass-1"]
    assert login["data"]["notes"] == "from the owner"
    assert login["folderUid"] == jv.folders["shared"]
    assert got[jv.records["rotate"]]["innerFolderUid"] == jv.folders["inner"]
    assert [(f["uid"], f["name"], f["size"]) for f in login["files"]] == [
        (jv.file_uid, "attachment.bin", ATTACHMENT_SIZE)
    ]


def test_filters_titles_and_folders(jv):
    only = records_of(jv, uids=[jv.records["rotate"]])
    assert list(only) == [jv.records["rotate"]]
    assert records_of(jv, uids=[jv.records["hidden"]]) == {}, "a record of an unshared folder"
    in_inner = records_of(jv, folders=[jv.folders["inner"]])
    assert list(in_inner) == [jv.records["rotate"]]
    assert js(jv.server, jv.storage, "by_title", title="JS Login") == [jv.records["login"]]
    assert js(jv.server, jv.storage, "by_title", title="JS Hidden") == []
    folders = {f["uid"]: f for f in js(jv.server, jv.storage, "get_folders")}
    assert folders[jv.folders["shared"]]["name"] == "JS Shared"
    assert folders[jv.folders["inner"]]["parentUid"] == jv.folders["shared"]
    assert jv.folders["other"] not in folders


def test_notation_reads_fields_custom_fields_and_escaped_labels(jv):
    uid = jv.records["login"]

    def notation(text: str) -> list:
        return js(jv.server, jv.storage, "notation", notation=text)

    assert notation(f"keeper://{uid}/field/password") == ["js-pass-1"]
    assert notation(f"keeper://{uid}/custom_field/Environment") == ["prod"]
    assert notation(f"keeper://{uid}/custom_field/Tricky \\[label\\]") == ["escaped"]
    assert notation("keeper://JS Login/field/login") == ["js@example.com"]
    js_fails(jv.server, jv.storage, "notation", "no fields matching", notation=f"keeper://{uid}/field/no_such_field")


def test_totp_code_of_the_stored_uri(jv):
    [uri] = js(jv.server, jv.storage, "notation", notation=f"keeper://{jv.records['login']}/field/oneTimeCode")
    assert uri == TOTP_URI
    at = int(time.time())
    totp = js(jv.server, jv.storage, "totp", url=uri, at=at)
    assert totp["code"] == rfc6238(TOTP_SECRET, at)
    assert totp["period"] == 30 and totp["timeLeft"] == 30 - at % 30, totp


def test_download_is_byte_exact(jv):
    target = jv.work / "downloaded.bin"
    out = js(jv.server, jv.storage, "download", uid=jv.records["login"], fileUid=jv.file_uid, path=str(target))
    assert out == {"size": ATTACHMENT_SIZE, "sha256": sha256(jv.attachment)}
    assert target.read_bytes() == jv.attachment


def test_a_used_token_does_not_bind_a_second_device(jv):
    # The same one-time config, set up in a second storage, is refused: the token is spent.
    config = add_client(jv.server, jv.app, "js-once")
    first = js(jv.server, jv.work / "once-a.json", "init", config=config)
    assert first["hostname"] == f"127.0.0.1:{jv.server.port}"
    js(jv.server, jv.work / "once-a.json", "get_secrets")
    js(jv.server, jv.work / "once-b.json", "init", config=config)
    js_fails(jv.server, jv.work / "once-b.json", "get_secrets", "access_denied")
    assert "appKey" not in json.loads((jv.work / "once-b.json").read_text())


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_save_and_a_stale_save(jv):
    uid = jv.records["login"]
    before = owner_record(jv.server, uid)
    js(jv.server, jv.storage, "update", uid=uid, fields={"password": ["js-pass-2"]}, notes="saved by JS")
    after = owner_record(jv.server, uid)
    assert after["revision"] == before["revision"] + 1
    assert field_values(after["data"], "password") == ["js-pass-2"]
    assert after["data"]["notes"] == "saved by JS"
    assert after["data"]["custom"] == before["data"]["custom"], "custom fields are kept"

    # A save from the old revision is refused and changes nothing.
    js_fails(jv.server, jv.storage, "update", "out_of_sync", uid=uid, fields={"password": ["stale"]},
             revision=before["revision"])
    assert owner_record(jv.server, uid) == after


def test_rotation_commit_and_rollback(jv):
    uid = jv.records["rotate"]
    js(jv.server, jv.storage, "update", uid=uid, fields={"password": ["rotate-1"]}, transaction="rotation")
    # While the transaction is open, a second update is refused.
    js_fails(jv.server, jv.storage, "update", "has an open transaction", uid=uid, fields={"password": ["rotate-x"]})
    js(jv.server, jv.storage, "complete", uid=uid, rollback=False)
    committed = owner_record(jv.server, uid)
    assert field_values(committed["data"], "password") == ["rotate-1"]

    js(jv.server, jv.storage, "update", uid=uid, fields={"password": ["rotate-2"]}, transaction="general")
    js(jv.server, jv.storage, "complete", uid=uid, rollback=True)
    rolled_back = owner_record(jv.server, uid)
    assert field_values(rolled_back["data"], "password") == ["rotate-1"]
    assert rolled_back["revision"] > committed["revision"], "a rollback is a new revision"
    js_fails(jv.server, jv.storage, "complete", "has no open transaction", uid=uid, rollback=False)


def test_create_in_a_sub_folder_then_delete(jv):
    data = {
        "title": "Made By JS",
        "type": "login",
        "fields": [
            {"type": "login", "value": ["made@example.com"]},
            {"type": "password", "value": ["made-pass"]},
        ],
        "custom": [{"type": "text", "label": "Origin", "value": ["node"]}],
        "notes": "created through the JS SDK",
    }
    uid = js(jv.server, jv.storage, "create", folderUid=jv.folders["shared"], subFolderUid=jv.folders["inner"],
             data=data)
    owned = owner_record(jv.server, uid)
    assert canonical(owned["data"]) == canonical(data)
    assert owned["folder_uid"] == jv.folders["inner"]
    assert uid in owner_records_in(jv.server, jv.folders["inner"])
    seen = records_of(jv, uids=[uid])[uid]
    assert seen["innerFolderUid"] == jv.folders["inner"]

    result = js(jv.server, jv.storage, "delete", uids=[uid])
    assert [(r["recordUid"], r["responseCode"]) for r in result["records"]] == [(uid, "ok")], result
    assert uid not in owner_records_in(jv.server, jv.folders["inner"])
    assert records_of(jv, uids=[uid]) == {}


def test_chunked_upload_round_trips(jv):
    uid = jv.records["login"]
    payload = os.urandom(UPLOAD_SIZE)
    source = jv.work / "upload.bin"
    source.write_bytes(payload)
    before = owner_record(jv.server, uid)
    file_uid = js(jv.server, jv.storage, "upload", uid=uid, path=str(source), name="upload.bin",
                  title="Uploaded by JS", type="application/octet-stream")
    after = owner_record(jv.server, uid)
    assert after["revision"] == before["revision"] + 1
    files = {f["uid"]: f for f in records_of(jv, uids=[uid])[uid]["files"]}
    assert files[file_uid]["size"] == UPLOAD_SIZE and files[file_uid]["title"] == "Uploaded by JS"
    target = jv.work / "upload-back.bin"
    out = js(jv.server, jv.storage, "download", uid=uid, fileUid=file_uid, path=str(target))
    assert out == {"size": UPLOAD_SIZE, "sha256": sha256(payload)}
    assert owner_download(jv.server, uid, file_uid, jv.work / "owner-copy.bin") == payload


def test_folders_create_rename_delete(jv):
    made = js(jv.server, jv.storage, "create_folder", folderUid=jv.folders["shared"],
              subFolderUid=jv.folders["inner"], name="JS Made")
    folders = owner_folders(jv.server)
    assert folders[made]["name"] == "JS Made", folders[made]
    assert {f["uid"]: f["parentUid"] for f in js(jv.server, jv.storage, "get_folders")}[made] == jv.folders["inner"]

    js(jv.server, jv.storage, "update_folder", uid=made, name="JS Renamed")
    assert owner_folders(jv.server)[made]["name"] == "JS Renamed"
    assert {f["uid"]: f["name"] for f in js(jv.server, jv.storage, "get_folders")}[made] == "JS Renamed"

    inside = js(jv.server, jv.storage, "create", folderUid=jv.folders["shared"], subFolderUid=made,
                data={"title": "Inside", "type": "login", "fields": [{"type": "login", "value": ["in"]}]})
    result = js(jv.server, jv.storage, "delete_folder", uids=[made], force=True)
    assert [(f["folderUid"], f["responseCode"]) for f in result["folders"]] == [(made, "ok")], result
    assert made not in owner_folders(jv.server)
    assert records_of(jv, uids=[inside]) == {}


def test_writes_through_a_read_only_share_are_refused(jv):
    reader_app = jv.server.cli_uid("vault", "app", "create", positional=["JS Reader"])
    jv.server.cli("vault", "app", "share", positional=[reader_app, jv.folders["shared"]])
    reader = device(jv.server, reader_app, jv.work / "reader.json", "js-reader")
    uid = jv.records["login"]
    before = owner_record(jv.server, uid)
    js_fails(jv.server, reader, "update", "access_denied", uid=uid, fields={"password": ["nope"]})
    js_fails(jv.server, reader, "create", "access_denied", folderUid=jv.folders["shared"],
             data={"title": "Nope", "type": "login", "fields": []})
    assert owner_record(jv.server, uid) == before
