"""Conformance of a real Coffer server with the official KSM Python SDK (17.3.0).

The vault is provisioned through the `coffer vault ...` CLI (DESIGN.md §4); every check is then
made with the unmodified `keeper_secrets_manager_core` package, configured only through the
base64 config that `coffer vault client add` prints (PROTOCOL.md §4.6).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keeper_secrets_manager_core import SecretsManager
from keeper_secrets_manager_core.configkeys import ConfigKeys
from keeper_secrets_manager_core.dto.payload import QueryOptions
from keeper_secrets_manager_core.exceptions import KeeperError
from keeper_secrets_manager_core.storage import InMemoryKeyValueStorage
from keeper_secrets_manager_core.utils import get_totp_code

from harness import deadline
from ksm_helpers import rfc6238

# ---------------------------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------------------------

TOTP_SECRET = "MNXWMZTFOIWWG33OMZXXE3LBNZRWKIJB"  # base32 of b"coffer-conformance!!"
TOTP_URI = (
    "otpauth://totp/Coffer:alice@example.com?secret="
    + TOTP_SECRET
    + "&issuer=Coffer&algorithm=SHA1&digits=6&period=30"
)

ATTACHMENT_NAME = "payload.bin"
ATTACHMENT_SIZE = 100_000

APP_A_NAME = "Conformance App A"
APP_B_NAME = "Conformance App B"

# Keys the official SDKs know in a config (PROTOCOL.md §4.1); Rust rejects any other key.
KNOWN_CONFIG_KEYS = {
    "hostname",
    "clientKey",
    "clientId",
    "privateKey",
    "appKey",
    "appOwnerPublicKey",
    "serverPublicKeyId",
    "serverPublicKey",
}

UNKNOWN_UID = "QUJDREVGR0hJSktMTU5PUA"  # well-formed, never issued

# A refusal is one round trip; anything slower means the SDK is looping on retries.
REFUSAL_DEADLINE_SECONDS = 30

# Folders: key -> (name, parent key or None). A folder without a parent is a shared folder.
FOLDERS: Dict[str, Tuple[str, Optional[str]]] = {
    "conformance": ("Conformance", None),
    "inner": ("Inner", "conformance"),
    "deep": ("Deep", "inner"),
    "second": ("Second Shared", None),
    "bravo": ("Bravo", None),
}


@dataclass
class RecordSpec:
    """A record made with `coffer vault record add --field/--custom` flags."""

    folder: str
    type: str
    title: str
    # (field type, label the record-type template gives it or None, value)
    fields: List[Tuple[str, Optional[str], Any]]
    # (label, field type, value)
    custom: List[Tuple[str, str, Any]] = field(default_factory=list)
    notes: Optional[str] = None


CLI_RECORDS: Dict[str, RecordSpec] = {
    "web_login": RecordSpec(
        folder="conformance",
        type="login",
        title="Web Login",
        fields=[
            ("login", None, "alice@example.com"),
            ("password", None, "S3cr3t!pass"),
            ("url", None, "https://a.example.com/login"),
            ("oneTimeCode", None, TOTP_URI),
        ],
        custom=[
            ("Environment", "text", "prod"),
            ("Owner", "name", {"first": "Jane", "middle": "Q", "last": "Doe"}),
            ("Path/With [Brackets]", "text", "escaped-label-value"),
        ],
        notes="Line1\nLine2",
    ),
    "db": RecordSpec(
        folder="inner",
        type="databaseCredentials",
        title="DB/Primary [eu]",
        fields=[
            # The databaseCredentials template labels its text field "type" (PROTOCOL.md §6.4).
            ("text", "type", "postgresql"),
            ("host", None, {"hostName": "db.internal", "port": "5432"}),
            ("login", None, "dbadmin"),
            ("password", None, "pg-pass"),
        ],
    ),
    "bank_card": RecordSpec(
        folder="conformance",
        type="bankCard",
        title="Corporate Card",
        fields=[
            (
                "paymentCard",
                None,
                {
                    "cardNumber": "4111111111111111",
                    "cardExpirationDate": "12/2030",
                    "cardSecurityCode": "123",
                },
            ),
            # A text-shaped field whose value looks like a number must stay a string.
            ("pinCode", None, "4321"),
        ],
    ),
    "contact": RecordSpec(
        folder="conformance",
        type="contact",
        title="John Smith",
        fields=[
            ("name", None, {"first": "John", "last": "Smith"}),
            ("email", None, "john.smith@example.com"),
            ("phone", None, {"region": "US", "number": "555-0100", "ext": "7", "type": "Work"}),
        ],
    ),
    "server": RecordSpec(
        folder="conformance",
        type="serverCredentials",
        title="Build Server",
        fields=[
            ("host", None, {"hostName": "build.internal", "port": "2222"}),
            ("login", None, "root"),
            ("password", None, "srv-pass"),
        ],
    ),
    "ssh": RecordSpec(
        folder="conformance",
        type="sshKeys",
        title="Deploy Key",
        fields=[
            ("login", None, "deploy"),
            (
                "keyPair",
                None,
                {
                    "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICofferConformance deploy@example.com",
                    "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
                    "b3BlbnNzaC1rZXktdjEAAAAAQ29mZmVy\n"
                    "-----END OPENSSH PRIVATE KEY-----\n",
                },
            ),
            ("password", None, "ssh-passphrase"),
        ],
    ),
    "notes": RecordSpec(
        folder="conformance",
        type="encryptedNotes",
        title="Escrow Notes",
        fields=[
            ("note", None, "Top secret\nsecond line"),
            ("date", None, 1700000000000),
        ],
    ),
    "dup1": RecordSpec(
        folder="conformance",
        type="login",
        title="Duplicate",
        fields=[("login", None, "dup-one"), ("password", None, "dup-pass-1")],
    ),
    "dup2": RecordSpec(
        folder="conformance",
        type="login",
        title="Duplicate",
        fields=[("login", None, "dup-two"), ("password", None, "dup-pass-2")],
    ),
    # In the second shared folder, which app A does not get; only "direct" is shared to it.
    "direct": RecordSpec(
        folder="second",
        type="login",
        title="Direct Share",
        fields=[("login", None, "direct-user"), ("password", None, "direct-pass")],
    ),
    "hidden": RecordSpec(
        folder="second",
        type="login",
        title="Second Folder Only",
        fields=[("login", None, "hidden-user"), ("password", None, "hidden-pass")],
    ),
    "bravo_login": RecordSpec(
        folder="bravo",
        type="login",
        title="Bravo Login",
        fields=[("login", None, "bravo-user"), ("password", None, "bravo-pass")],
    ),
    "bravo_note": RecordSpec(
        folder="bravo",
        type="encryptedNotes",
        title="Bravo Note",
        fields=[("note", None, "bravo note text")],
    ),
}

# A record of a custom record type, given to `record add --json-file` (PROTOCOL.md §6.1).
WIDGET_RECORD: Dict[str, Any] = {
    "title": "Widget Config",
    "type": "conformanceWidget",
    "fields": [
        {"type": "text", "label": "Widget Id", "value": ["W-42"]},
        {"type": "multiline", "label": "Description", "value": ["first line\nsecond line"]},
        {"type": "checkbox", "label": "Enabled", "value": [True]},
        {"type": "url", "value": ["https://widget.example.com", "https://mirror.example.com"]},
        {"type": "date", "label": "Installed", "value": [1690000000000]},
    ],
    "custom": [
        {
            "type": "phone",
            "label": "Phones",
            "value": [
                {"region": "US", "number": "555-0100", "ext": "1", "type": "Work"},
                {"number": "555-0199", "type": "Mobile"},
            ],
        },
        {
            "type": "securityQuestion",
            "label": "Recovery",
            "value": [{"question": "Favourite colour?", "answer": "blue"}],
        },
        {"type": "text", "label": "Ünïcødé", "value": ["ça marche — ✓"]},
    ],
    "notes": "Widget notes",
}
WIDGET_FOLDER = "deep"

# What each application must see.
APP_A_RECORDS = {
    "web_login",
    "db",
    "bank_card",
    "contact",
    "server",
    "ssh",
    "notes",
    "dup1",
    "dup2",
    "widget",
    "direct",
}
APP_A_FOLDER_RECORDS = APP_A_RECORDS - {"direct"}
APP_B_RECORDS = {"bravo_login", "bravo_note"}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """JSON text with sorted keys: distinguishes 1 from 1.0 and "1", and True from 1."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def cli_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def field_args(spec: RecordSpec) -> List[str]:
    args: List[str] = []
    for ftype, _label, value in spec.fields:
        args += ["--field", f"{ftype}={cli_value(value)}"]
    for label, ftype, value in spec.custom:
        key = label if ftype == "text" else f"{label}:{ftype}"
        args += ["--custom", f"{key}={cli_value(value)}"]
    if spec.notes is not None:
        args += ["--notes", spec.notes]
    return args


def b64url_nopad_decode(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text), f"not unpadded URL-safe base64: {text!r}"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def client_id_of(client_key_b64url: str) -> str:
    digest = hmac.new(
        b64url_nopad_decode(client_key_b64url), b"KEEPER_SECRETS_MANAGER_CLIENT_ID", hashlib.sha512
    ).digest()
    return base64.b64encode(digest).decode()


def uids(records) -> List[str]:
    return [r.uid for r in records]


def new_sdk(config: Any) -> SecretsManager:
    """An SDK client on an in-memory config (base64 text or a dict); TLS verification stays on."""
    return SecretsManager(config=InMemoryKeyValueStorage(config), verify_ssl_certs=True)


def fresh_private_key_b64() -> str:
    """A valid device key in the SDK's own format: PKCS#8 DER of a P-256 key, standard base64."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


def assert_access_denied(call, what: str) -> KeeperError:
    """The server must refuse with its JSON error `access_denied` (PROTOCOL.md §2.6, §14 items 12-13, 23-25).

    The Python SDK turns a JSON error body into KeeperError("Error: <code>, message=<message>");
    a non-JSON body would surface as requests.HTTPError instead and fail this check.
    """
    try:
        # A server that answers `key` instead makes the SDK retry forever (PROTOCOL.md §2.10).
        with deadline(REFUSAL_DEADLINE_SECONDS, what):
            result = call()
    except KeeperError as err:
        text = str(err)
        assert text.startswith("Error: access_denied,"), (
            f"{what}: expected the server's access_denied error, got KeeperError {text!r}"
        )
        return err
    except Exception as err:  # noqa: BLE001 - report anything else as a failure
        pytest.fail(
            f"{what}: expected KeeperError 'Error: access_denied, ...', got "
            f"{type(err).__name__}: {err}"
        )
    pytest.fail(f"{what}: the call succeeded but must be refused (returned {result!r})")


def records_by_uid(records) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for rec in records:
        assert rec.uid not in out, f"record {rec.uid} ({rec.title}) returned twice"
        out[rec.uid] = rec
    return out


# ---------------------------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vault(coffer_server, owner, tmp_path_factory):
    """Provision folders, records, an attachment, two apps and their shares through the CLI."""
    work = tmp_path_factory.mktemp("vault")
    server = coffer_server

    folders: Dict[str, str] = {}
    for key, (name, parent) in FOLDERS.items():
        args = ["vault", "folder", "create"]
        if parent is not None:
            args.append(f"--parent={folders[parent]}")
        folders[key] = server.cli_uid(*args, positional=[name])

    records: Dict[str, str] = {}
    for key, spec in CLI_RECORDS.items():
        records[key] = server.cli_uid(
            "vault",
            "record",
            "add",
            f"--folder={folders[spec.folder]}",
            "--type",
            spec.type,
            "--title",
            spec.title,
            *field_args(spec),
        )

    widget_path = work / "widget.json"
    widget_path.write_text(json.dumps(WIDGET_RECORD, indent=2, ensure_ascii=False), encoding="utf-8")
    records["widget"] = server.cli_uid(
        "vault", "record", "add", f"--folder={folders[WIDGET_FOLDER]}", "--json-file", str(widget_path)
    )

    attachment = os.urandom(ATTACHMENT_SIZE)
    attachment_path = work / ATTACHMENT_NAME
    attachment_path.write_bytes(attachment)
    file_uid = server.cli_uid(
        "vault", "file", "attach", positional=[records["web_login"], str(attachment_path)]
    )

    app_a = server.cli_uid("vault", "app", "create", positional=[APP_A_NAME])
    server.cli("vault", "app", "share", positional=[app_a, folders["conformance"]])
    server.cli("vault", "app", "share", "--editable", positional=[app_a, records["direct"]])

    app_b = server.cli_uid("vault", "app", "create", positional=[APP_B_NAME])
    server.cli("vault", "app", "share", "--editable", positional=[app_b, folders["bravo"]])

    all_uids = list(folders.values()) + list(records.values()) + [file_uid, app_a, app_b]
    assert len(set(all_uids)) == len(all_uids), f"the CLI returned a uid twice: {all_uids}"

    # Migration run (scripts/test.sh): the provisioned SQLite vault moves to PostgreSQL with
    # `coffer admin migrate`, and every test below runs against the migrated database.
    migrate_admin_url = os.environ.get("COFFER_TEST_MIGRATE_URL")
    if migrate_admin_url:
        server.migrate_to_postgres(migrate_admin_url)

    return SimpleNamespace(
        server=server,
        work=work,
        folders=folders,
        records=records,
        file_uid=file_uid,
        attachment=attachment,
        app_a=app_a,
        app_b=app_b,
    )


def add_client(vault, app_uid: str, name: str, *extra: str) -> dict:
    """`coffer vault client add`; checks the shape of its output (DESIGN.md §4)."""
    out = vault.server.cli("vault", "client", "add", "--name", name, *extra, positional=[app_uid])
    for key in ("token", "client_id", "config"):
        assert isinstance(out.get(key), str) and out[key], f"client add: missing {key!r} in {out}"
    return out


def list_clients(vault, app_uid: str) -> Dict[str, dict]:
    out = vault.server.cli("vault", "client", "list", positional=[app_uid])
    clients = out.get("clients")
    assert isinstance(clients, list), f"client list: no 'clients' array in {out}"
    listed: Dict[str, dict] = {}
    for entry in clients:
        assert isinstance(entry, dict) and isinstance(entry.get("client_id"), str), entry
        listed[entry["client_id"]] = entry
    return listed


def bind(config_b64: str, what: str) -> SecretsManager:
    sdk = new_sdk(config_b64)
    with deadline(60, what):
        try:
            sdk.get_secrets()
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{what}: binding with the one-time config failed: {type(err).__name__}: {err}")
    return sdk


@pytest.fixture(scope="module")
def client_a(vault):
    """App A's main device: bound by the first get_secrets, with the config before and after."""
    issued = add_client(vault, vault.app_a, "conformance-main")
    listed_before = list_clients(vault, vault.app_a)
    storage = InMemoryKeyValueStorage(issued["config"])
    sdk = SecretsManager(config=storage, verify_ssl_certs=True)
    config_before = dict(storage.read_storage())
    with deadline(60, "binding app A's main client"):
        try:
            first = sdk.get_secrets(full_response=True)
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"binding app A's main client failed: {type(err).__name__}: {err}")
    config_after = dict(storage.read_storage())
    listed_after = list_clients(vault, vault.app_a)
    return SimpleNamespace(
        issued=issued,
        sdk=sdk,
        storage=storage,
        config_before=config_before,
        config_after=config_after,
        first=first,
        listed_before=listed_before,
        listed_after=listed_after,
    )


@pytest.fixture(scope="module")
def client_b(vault):
    issued = add_client(vault, vault.app_b, "conformance-bravo")
    return SimpleNamespace(issued=issued, sdk=bind(issued["config"], "binding app B's client"))


@pytest.fixture(scope="module")
def a_records(client_a):
    """App A's records from one unfiltered get_secrets, by uid."""
    return records_by_uid(client_a.sdk.get_secrets())


def expected_uids(vault, keys) -> set:
    return {vault.records[k] for k in keys}


def name_of(vault, uid: str) -> str:
    for key, value in vault.records.items():
        if value == uid:
            return key
    return uid


# ---------------------------------------------------------------------------------------------
# Server and CLI contract around the SDK
# ---------------------------------------------------------------------------------------------


def test_setup_code_file_is_deleted_after_first_registration(owner, coffer_server):
    assert not coffer_server.setup_code_path.exists(), (
        "DATA_DIR/setup-code must be deleted once the first owner registered (DESIGN.md §4)"
    )


def test_issued_uids_have_the_uid_form(vault):
    issued = {f"folder {k}": v for k, v in vault.folders.items()}
    issued.update({f"record {k}": v for k, v in vault.records.items()})
    issued.update({"app A": vault.app_a, "app B": vault.app_b})
    for what, uid in {**issued, "file": vault.file_uid}.items():
        assert len(uid) == 22 and len(b64url_nopad_decode(uid)) == 16, (what, uid)
    # PROTOCOL.md §3.10: generated record and folder UIDs SHOULD NOT start with "-" or "_"
    # (a command line cannot take "-..." as an argument); app UIDs are CLI arguments as well.
    leading = {what: uid for what, uid in issued.items() if uid[0] in "-_"}
    assert not leading, f"UIDs starting with '-' or '_': {leading}"


def test_client_add_prints_token_and_a_ksm_config(vault, client_a, coffer_server):
    issued = client_a.issued
    config_b64 = issued["config"]
    # Standard base64 that round-trips exactly: what InMemoryKeyValueStorage / KSM_CONFIG accept.
    assert base64.b64encode(base64.b64decode(config_b64)).decode() == config_b64
    config = json.loads(base64.b64decode(config_b64))
    assert isinstance(config, dict)
    for key in ("hostname", "clientKey", "serverPublicKeyId", "serverPublicKey"):
        assert key in config, f"config lacks {key!r}: {sorted(config)}"
    unknown = set(config) - KNOWN_CONFIG_KEYS
    assert not unknown, f"config has keys no SDK knows (the Rust SDK rejects them): {unknown}"
    assert all(isinstance(v, str) for v in config.values()), f"config values must be strings: {config}"

    assert config["hostname"] == coffer_server.host
    assert config["serverPublicKeyId"].isdigit(), config["serverPublicKeyId"]
    server_key = b64url_nopad_decode(config["serverPublicKey"])
    assert len(server_key) == 65 and server_key[0] == 4, "serverPublicKey must be an uncompressed P-256 point"
    assert len(b64url_nopad_decode(config["clientKey"])) == 32

    # The token carries the same client key as the config (optionally after a host prefix).
    assert issued["token"].split(":")[-1] == config["clientKey"]


def test_binding_stores_app_key_and_drops_client_key(client_a, coffer_server):
    before, after = client_a.config_before, client_a.config_after
    client_key = before["clientKey"]

    # What the SDK prepared from the config before its first call (PROTOCOL.md §4.4).
    assert before["clientId"] == client_id_of(client_key)
    assert before.get("privateKey")
    assert "appKey" not in before

    # After binding (§4.5): appKey stored, clientKey gone, device identity unchanged.
    assert "clientKey" not in after, "the SDK deletes clientKey only after a binding response"
    assert len(base64.b64decode(after["appKey"])) == 32
    owner_key = base64.b64decode(after["appOwnerPublicKey"])
    assert len(owner_key) == 65 and owner_key[0] == 4, "appOwnerPublicKey must be a P-256 point"
    assert after["clientId"] == before["clientId"]
    assert after["privateKey"] == before["privateKey"]
    for key in ("hostname", "serverPublicKey", "serverPublicKeyId"):
        assert after[key] == before[key], key
    assert after["hostname"] == coffer_server.host


def test_binding_response_carries_app_data(client_a):
    first = client_a.first
    assert first.appData.title == APP_A_NAME
    assert first.appData.app_type == "app"
    assert isinstance(first.expiresOn, int), f"expiresOn must be an integer, got {first.expiresOn!r}"
    assert first.bad_records == [] and first.bad_folders == []


def test_client_list_shows_binding(client_a):
    client_id = client_a.issued["client_id"]
    assert client_id in client_a.listed_before, f"{client_id} not in {list(client_a.listed_before)}"
    assert client_id in client_a.listed_after
    assert client_a.listed_before[client_id]["bound"] is False
    assert client_a.listed_after[client_id]["bound"] is True
    assert client_a.listed_after[client_id]["name"] == "conformance-main"


# ---------------------------------------------------------------------------------------------
# get_secrets: visibility, filters, titles
# ---------------------------------------------------------------------------------------------


def test_get_all_returns_exactly_the_shared_records(vault, client_a):
    resp = client_a.sdk.get_secrets(full_response=True)
    assert resp.bad_records == [], resp.bad_records
    assert resp.bad_folders == [], resp.bad_folders
    got = records_by_uid(resp.records)
    expected = expected_uids(vault, APP_A_RECORDS)
    assert set(got) == expected, (
        f"missing: {sorted(name_of(vault, u) for u in expected - set(got))}, "
        f"unexpected: {sorted(name_of(vault, u) for u in set(got) - expected)}"
    )
    # Sub-folder contents are folded into their shared folder; only the shared folder is listed.
    assert [f.uid for f in resp.folders] == [vault.folders["conformance"]]
    in_folder = {r.uid for r in resp.folders[0].records}
    assert in_folder == expected_uids(vault, APP_A_FOLDER_RECORDS)
    assert resp.appData.title == APP_A_NAME
    assert isinstance(resp.expiresOn, int)
    assert resp.warnings is None or all(isinstance(w, str) for w in resp.warnings)


def test_folder_records_report_their_shared_folder(vault, a_records):
    for key in APP_A_FOLDER_RECORDS:
        rec = a_records[vault.records[key]]
        assert rec.folder_uid == vault.folders["conformance"], key


def test_record_flags_follow_the_share(vault, a_records):
    # App A got the Conformance folder read-only and the direct record editable.
    for key in APP_A_FOLDER_RECORDS:
        assert a_records[vault.records[key]].is_editable is False, key
    assert a_records[vault.records["direct"]].is_editable is True
    for rec in a_records.values():
        assert isinstance(rec.revision, int) and not isinstance(rec.revision, bool), (rec.title, rec.revision)


def test_filter_by_one_uid(vault, client_a):
    for key in ("web_login", "db", "widget", "direct"):
        got = client_a.sdk.get_secrets([vault.records[key]])
        assert uids(got) == [vault.records[key]], key


def test_filter_by_two_uids(vault, client_a):
    wanted = [vault.records["contact"], vault.records["direct"]]
    got = client_a.sdk.get_secrets(wanted)
    assert sorted(uids(got)) == sorted(wanted)


def test_filter_by_unknown_uid_returns_nothing(client_a):
    resp = client_a.sdk.get_secrets([UNKNOWN_UID], full_response=True)
    assert resp.records == []
    assert resp.warnings is None or all(isinstance(w, str) for w in resp.warnings)


def test_filter_by_uid_of_unshared_record_returns_nothing(vault, client_a):
    assert client_a.sdk.get_secrets([vault.records["hidden"]]) == []


def test_filter_mixing_visible_and_unknown_uids(vault, client_a):
    got = client_a.sdk.get_secrets([vault.records["ssh"], UNKNOWN_UID, vault.records["hidden"]])
    assert uids(got) == [vault.records["ssh"]]


def test_requested_folders_filter(vault, client_a):
    # PROTOCOL.md §5.1 (recommended semantics): a shared folder yields its whole tree, a
    # sub-folder the records directly inside it; directly shared records are left out.
    whole = client_a.sdk.get_secrets_with_options(
        QueryOptions(records_filter=None, folders_filter=[vault.folders["conformance"]])
    )
    assert set(uids(whole)) == expected_uids(vault, APP_A_FOLDER_RECORDS)
    inner = client_a.sdk.get_secrets_with_options(
        QueryOptions(records_filter=None, folders_filter=[vault.folders["inner"]])
    )
    assert uids(inner) == [vault.records["db"]]


def test_get_secret_by_title(vault, client_a):
    rec = client_a.sdk.get_secret_by_title("Web Login")
    assert rec is not None and rec.uid == vault.records["web_login"]
    dups = client_a.sdk.get_secrets_by_title("Duplicate")
    assert sorted(uids(dups)) == sorted([vault.records["dup1"], vault.records["dup2"]])
    assert client_a.sdk.get_secret_by_title("No Such Title") is None
    # A title of app B's record is not visible to app A.
    assert client_a.sdk.get_secrets_by_title("Bravo Login") == []


# ---------------------------------------------------------------------------------------------
# Record content
# ---------------------------------------------------------------------------------------------


def check_cli_record(rec, spec: RecordSpec, has_attachment: bool) -> None:
    assert rec.title == spec.title
    assert rec.type == spec.type

    for ftype, label, value in spec.fields:
        key = label or ftype
        assert canonical(rec.get_standard_field_value(key)) == canonical([value]), (spec.title, key)
        assert canonical(rec.field(key, single=True)) == canonical(value), (spec.title, key)
        raw = rec.get_standard_field(key)
        assert raw["type"] == ftype, (spec.title, key, raw)
        if label is not None:
            assert raw.get("label") == label, (spec.title, raw)

    given_types = {ftype for ftype, _, _ in spec.fields}
    for raw in rec.dict["fields"]:
        assert isinstance(raw.get("value"), list), (spec.title, raw)
        if raw["value"] and not (raw["type"] == "fileRef" and has_attachment):
            assert raw["type"] in given_types, f"{spec.title}: unexpected non-empty field {raw}"

    custom = [(c.get("label"), c.get("type"), c.get("value")) for c in rec.dict.get("custom") or []]
    assert canonical(custom) == canonical([(l, t, [v]) for l, t, v in spec.custom]), spec.title
    for label, _ftype, value in spec.custom:
        assert canonical(rec.custom_field(label)) == canonical([value]), (spec.title, label)
        assert canonical(rec.get_custom_field_value(label, single=True)) == canonical(value)

    assert rec.dict.get("notes") == spec.notes or (spec.notes is None and not rec.dict.get("notes"))


@pytest.mark.parametrize("key", sorted(k for k in CLI_RECORDS if k in APP_A_RECORDS))
def test_record_values_as_provisioned(vault, a_records, key):
    rec = a_records[vault.records[key]]
    check_cli_record(rec, CLI_RECORDS[key], has_attachment=(key == "web_login"))


@pytest.mark.parametrize("key", sorted(APP_B_RECORDS))
def test_app_b_record_values_as_provisioned(vault, client_b, key):
    got = client_b.sdk.get_secrets([vault.records[key]])
    assert uids(got) == [vault.records[key]]
    check_cli_record(got[0], CLI_RECORDS[key], has_attachment=False)


def test_json_file_record_is_stored_as_given(vault, a_records):
    rec = a_records[vault.records["widget"]]
    assert rec.type == "conformanceWidget"
    assert canonical(rec.dict) == canonical(WIDGET_RECORD)
    assert rec.field("Widget Id") == ["W-42"]
    assert rec.field("url") == ["https://widget.example.com", "https://mirror.example.com"]
    assert rec.field("Enabled", single=True) is True
    assert rec.get_custom_field_value("Phones")[1] == {"number": "555-0199", "type": "Mobile"}
    assert rec.custom_field("Ünïcødé", single=True) == "ça marche — ✓"


def test_login_password_shortcut(vault, a_records):
    assert a_records[vault.records["web_login"]].password == "S3cr3t!pass"
    assert a_records[vault.records["direct"]].password == "direct-pass"


def test_inner_folder_uid(vault, a_records):
    assert a_records[vault.records["db"]].inner_folder_uid == vault.folders["inner"]
    assert a_records[vault.records["widget"]].inner_folder_uid == vault.folders["deep"]
    for key in APP_A_FOLDER_RECORDS - {"db", "widget"}:
        # null when the record sits directly in the shared folder (PROTOCOL.md §5.1)
        assert not a_records[vault.records[key]].inner_folder_uid, key


def test_directly_shared_record(vault, client_a):
    got = client_a.sdk.get_secrets([vault.records["direct"]], full_response=True)
    assert uids(got.records) == [vault.records["direct"]]
    # A shared-folder object comes only with a requested record inside it (PROTOCOL.md §5.1).
    assert got.folders == []
    rec = got.records[0]
    assert rec.field("login", single=True) == "direct-user"
    assert rec.field("password", single=True) == "direct-pass"


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------


def test_get_folders(vault, client_a):
    folders = client_a.sdk.get_folders()
    got = {f.folder_uid: (f.name, f.parent_uid) for f in folders}
    conf, inner, deep = (vault.folders[k] for k in ("conformance", "inner", "deep"))
    assert got == {
        conf: ("Conformance", ""),
        inner: ("Inner", conf),
        deep: ("Deep", inner),
    }
    for f in folders:
        assert isinstance(f.folder_key, bytes) and len(f.folder_key) == 32, f.name


def test_get_folders_of_app_b(vault, client_b):
    got = {f.folder_uid: (f.name, f.parent_uid) for f in client_b.sdk.get_folders()}
    assert got == {vault.folders["bravo"]: ("Bravo", "")}


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def attachment_of(vault, client_a):
    (rec,) = client_a.sdk.get_secrets([vault.records["web_login"]])
    assert len(rec.files) == 1, [str(f) for f in rec.files]
    return rec, rec.files[0]


def test_attachment_metadata(vault, client_a):
    rec, file = attachment_of(vault, client_a)
    assert file.f["fileUid"] == vault.file_uid
    assert file.name == ATTACHMENT_NAME
    assert file.size == ATTACHMENT_SIZE
    assert isinstance(file.title, str) and file.title
    assert file.f["url"].startswith("https://")
    # Vault tools list attachments in the record's fileRef field, as the SDKs do (§5.10).
    assert vault.file_uid in rec.field("fileRef")


def test_attachment_download(vault, client_a):
    _rec, file = attachment_of(vault, client_a)
    assert file.get_file_data() == vault.attachment


def test_attachment_save_file(vault, client_a, tmp_path):
    _rec, file = attachment_of(vault, client_a)
    target = tmp_path / "saved.bin"
    assert file.save_file(str(target)) is True
    assert target.read_bytes() == vault.attachment


def test_attachment_url_stays_valid(vault, client_a):
    _rec, file = attachment_of(vault, client_a)
    assert file.get_file_data() == vault.attachment
    file.file_data = None  # drop the SDK's cache to fetch the same URL again
    assert file.get_file_data() == vault.attachment


def test_attachment_not_visible_to_app_b(vault, client_b):
    assert client_b.sdk.get_secrets([vault.records["web_login"]]) == []


# ---------------------------------------------------------------------------------------------
# Keeper notation (PROTOCOL.md §7)
# ---------------------------------------------------------------------------------------------

NOTATIONS = [
    ("keeper://{web_login}/field/login", ["alice@example.com"]),
    ("{web_login}/field/password", ["S3cr3t!pass"]),
    ("keeper://{web_login}/field/url", ["https://a.example.com/login"]),
    ("keeper://{web_login}/field/url[0]", ["https://a.example.com/login"]),
    ("keeper://{web_login}/field/oneTimeCode", [TOTP_URI]),
    ("keeper://{web_login}/custom_field/Environment", ["prod"]),
    ("keeper://{web_login}/custom_field/Owner[0][first]", ["Jane"]),
    ("keeper://{web_login}/custom_field/Owner[][last]", ["Doe"]),
    ("keeper://{web_login}/custom_field/Path\\/With \\[Brackets\\]", ["escaped-label-value"]),
    ("keeper://{web_login}/type", ["login"]),
    ("keeper://{web_login}/title", ["Web Login"]),
    ("keeper://{web_login}/notes", ["Line1\nLine2"]),
    ("KEEPER://{web_login}/TITLE", ["Web Login"]),
    ("keeper://Web Login/field/login", ["alice@example.com"]),
    ("keeper://DB\\/Primary \\[eu\\]/field/host[0][hostName]", ["db.internal"]),
    ("keeper://DB\\/Primary \\[eu\\]/field/host[0][port]", ["5432"]),
    ("keeper://DB\\/Primary \\[eu\\]/field/type", ["postgresql"]),
    ("keeper://{db}/field/login", ["dbadmin"]),
    ("keeper://{bank_card}/field/paymentCard[0][cardNumber]", ["4111111111111111"]),
    ("keeper://{bank_card}/field/pinCode", ["4321"]),
    ("keeper://{contact}/field/phone[0][number]", ["555-0100"]),
    ("keeper://{server}/field/host[0][port]", ["2222"]),
    ("keeper://{ssh}/field/keyPair[0][privateKey]", [CLI_RECORDS["ssh"].fields[1][2]["privateKey"]]),
    ("keeper://{notes}/field/note", ["Top secret\nsecond line"]),
    ("keeper://{notes}/field/date", ["1700000000000"]),
    ("keeper://{widget}/field/url[1]", ["https://mirror.example.com"]),
    ("keeper://{widget}/field/Enabled", ["true"]),
    ("keeper://{widget}/custom_field/Phones[][number]", ["555-0100", "555-0199"]),
    ("keeper://{widget}/custom_field/Ünïcødé", ["ça marche — ✓"]),
    ("keeper://Widget Config/notes", ["Widget notes"]),
    ("keeper://{direct}/field/password", ["direct-pass"]),
    ("keeper://Direct Share/field/login", ["direct-user"]),
]


@pytest.mark.parametrize("template,expected", NOTATIONS, ids=[n for n, _ in NOTATIONS])
def test_notation(vault, client_a, template, expected):
    notation = template.format(**vault.records)
    assert client_a.sdk.get_notation_results(notation) == expected


def test_notation_object_value(vault, client_a):
    (text,) = client_a.sdk.get_notation_results(f"keeper://{vault.records['web_login']}/custom_field/Owner")
    assert json.loads(text) == {"first": "Jane", "middle": "Q", "last": "Doe"}


def test_notation_base64_form(vault, client_a):
    notation = f"keeper://{vault.records['web_login']}/field/login"
    encoded = base64.urlsafe_b64encode(notation.encode()).decode()
    assert client_a.sdk.get_notation_results(encoded) == ["alice@example.com"]


def test_notation_file(vault, client_a):
    uid = vault.records["web_login"]
    expected = base64.urlsafe_b64encode(vault.attachment).decode().rstrip("=")
    assert client_a.sdk.get_notation_results(f"keeper://{uid}/file/{ATTACHMENT_NAME}") == [expected]
    assert client_a.sdk.get_notation_results(f"keeper://{uid}/file/{vault.file_uid}") == [expected]


def test_legacy_get_notation(vault, client_a):
    uid = vault.records["web_login"]
    sdk = client_a.sdk
    assert sdk.get_notation(f"{uid}/custom_field/Owner[first]") == "Jane"
    assert sdk.get_notation(f"{uid}/field/url") == "https://a.example.com/login"
    assert sdk.get_notation(f"{vault.records['db']}/field/host[hostName]") == "db.internal"
    assert sdk.get_notation(f"{vault.records['notes']}/field/date") == 1700000000000
    assert sdk.get_notation(f"keeper://{uid}/file/{ATTACHMENT_NAME}") == vault.attachment


def test_notation_ambiguous_title(client_a):
    with pytest.raises(ValueError, match="multiple records match"):
        client_a.sdk.get_notation_results("keeper://Duplicate/field/login")


def test_notation_unknown_and_foreign_records(vault, client_a):
    with pytest.raises(ValueError, match="no records match"):
        client_a.sdk.get_notation_results("keeper://No Such Title/field/login")
    with pytest.raises(ValueError, match="no records match"):
        client_a.sdk.get_notation_results(f"keeper://{vault.records['bravo_login']}/field/login")
    with pytest.raises(ValueError, match="no records match"):
        client_a.sdk.get_notation_results(f"keeper://{vault.records['hidden']}/field/login")


# ---------------------------------------------------------------------------------------------
# TOTP (PROTOCOL.md §8.1)
# ---------------------------------------------------------------------------------------------


def test_reference_totp_matches_rfc6238_vector():
    # RFC 6238 Appendix B, SHA1, T = 59 s, 8 digits; guards the reference used below.
    assert rfc6238("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59, digits=8) == "94287082"


def test_totp_code_from_stored_uri(vault, a_records):
    uri = a_records[vault.records["web_login"]].field("oneTimeCode", single=True)
    assert uri == TOTP_URI
    for _attempt in range(3):
        before = int(time.time())
        totp = get_totp_code(uri)
        after = int(time.time())
        if before // 30 != after // 30:
            continue  # the 30 s window rolled over during the call; try again
        assert totp.code == rfc6238(TOTP_SECRET, before)
        assert totp.period == 30
        assert totp.time_left in {30 - before % 30, 30 - after % 30}
        return
    pytest.fail("the TOTP window rolled over on every attempt")


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_token_cannot_bind_a_second_device(vault):
    issued = add_client(vault, vault.app_a, "two-devices")
    first = bind(issued["config"], "first device")

    # Same one-time config, fresh storage: the SDK makes a new device key and tries to bind it.
    second_storage = InMemoryKeyValueStorage(json.loads(base64.b64decode(issued["config"])))
    second = SecretsManager(config=second_storage, verify_ssl_certs=True)
    assert second_storage.get(ConfigKeys.KEY_CLIENT_ID) == first.config.get(ConfigKeys.KEY_CLIENT_ID)
    assert second_storage.get(ConfigKeys.KEY_PRIVATE_KEY) != first.config.get(ConfigKeys.KEY_PRIVATE_KEY)

    assert_access_denied(second.get_secrets, "binding a used token with another device key")
    assert second_storage.get(ConfigKeys.KEY_APP_KEY) is None

    # The refused attempt does not disturb the device that bound first.
    assert set(uids(first.get_secrets())) == expected_uids(vault, APP_A_RECORDS)


def test_removed_bound_client_is_refused_at_once(vault):
    issued = add_client(vault, vault.app_a, "to-remove")
    sdk = bind(issued["config"], "client to remove")
    assert uids(sdk.get_secrets([vault.records["web_login"]])) == [vault.records["web_login"]]
    assert issued["client_id"] in list_clients(vault, vault.app_a)

    vault.server.cli("vault", "client", "remove", positional=[vault.app_a, issued["client_id"]])

    assert_access_denied(sdk.get_secrets, "get_secrets of a removed client")
    assert_access_denied(sdk.get_folders, "get_folders of a removed client")


def test_removed_unbound_client_cannot_bind(vault):
    issued = add_client(vault, vault.app_a, "removed-before-use")
    vault.server.cli("vault", "client", "remove", positional=[vault.app_a, issued["client_id"]])
    sdk = new_sdk(issued["config"])
    assert_access_denied(sdk.get_secrets, "binding a removed client")


def test_expired_first_access_is_refused(vault):
    issued = add_client(vault, vault.app_a, "expires-fast", "--first-access-expires", "2s")
    time.sleep(3)
    sdk = new_sdk(issued["config"])
    assert_access_denied(sdk.get_secrets, "binding after --first-access-expires 2s elapsed")


def test_first_access_within_window_binds_and_outlives_the_window(vault):
    issued = add_client(vault, vault.app_a, "expires-later", "--first-access-expires", "8s")
    sdk = bind(issued["config"], "binding within the first-access window")
    time.sleep(9)
    # The expiry limits the first access only; a bound device keeps working.
    assert uids(sdk.get_secrets([vault.records["direct"]])) == [vault.records["direct"]]


def test_wrong_signature_is_refused(vault):
    issued = add_client(vault, vault.app_a, "wrong-key")
    sdk = bind(issued["config"], "client for the wrong-key test")
    genuine = sdk.config.get(ConfigKeys.KEY_PRIVATE_KEY)

    sdk.config.set(ConfigKeys.KEY_PRIVATE_KEY, fresh_private_key_b64())
    assert_access_denied(sdk.get_secrets, "get_secrets signed with a key that was never bound")
    assert_access_denied(sdk.get_folders, "get_folders signed with a key that was never bound")

    # With its own key again the device works: the refusal was about the signature.
    sdk.config.set(ConfigKeys.KEY_PRIVATE_KEY, genuine)
    assert uids(sdk.get_secrets([vault.records["ssh"]])) == [vault.records["ssh"]]


def test_app_isolation(vault, client_a, client_b):
    resp = client_b.sdk.get_secrets(full_response=True)
    assert set(uids(resp.records)) == expected_uids(vault, APP_B_RECORDS)
    assert [f.uid for f in resp.folders] == [vault.folders["bravo"]]
    assert resp.appData.title == APP_B_NAME
    for rec in resp.records:
        assert rec.is_editable is True, rec.title  # app B got its folder editable

    a_uids = set(uids(client_a.sdk.get_secrets()))
    assert not a_uids & expected_uids(vault, APP_B_RECORDS)
    for key in APP_B_RECORDS:
        assert client_a.sdk.get_secrets([vault.records[key]]) == [], key
    for key in ("web_login", "direct", "db"):
        assert client_b.sdk.get_secrets([vault.records[key]]) == [], key
    assert client_a.sdk.get_secrets_by_title("Bravo Note") == []
