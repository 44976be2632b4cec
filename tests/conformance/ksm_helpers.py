"""Helpers for the write-path conformance tests (official Python SDK against a real server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest
from keeper_secrets_manager_core import SecretsManager
from keeper_secrets_manager_core.exceptions import KeeperError
from keeper_secrets_manager_core.storage import InMemoryKeyValueStorage

from harness import CofferServer, deadline

# A refusal is one round trip; anything slower means the SDK is looping on retries.
REFUSAL_DEADLINE_SECONDS = 30

UNKNOWN_UID = "QUJDREVGR0hJSktMTU5PUA"  # well-formed, never issued


def canonical(value: Any) -> str:
    """JSON text with sorted keys: distinguishes 1 from 1.0 and "1", and True from 1."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def new_sdk(config: str) -> SecretsManager:
    """An SDK client on an in-memory copy of a base64 config; TLS verification stays on."""
    return SecretsManager(config=InMemoryKeyValueStorage(config), verify_ssl_certs=True)


def add_client(server: CofferServer, app_uid: str, name: str) -> str:
    """`coffer vault client add`; returns the base64 one-time config."""
    out = server.cli("vault", "client", "add", "--name", name, positional=[app_uid])
    config = out.get("config")
    assert isinstance(config, str) and config, f"client add printed no config: {out}"
    return config


def bound_client(server: CofferServer, app_uid: str, name: str) -> SecretsManager:
    """A new device of the app, bound by its first get_secrets."""
    sdk = new_sdk(add_client(server, app_uid, name))
    with deadline(60, f"binding {name}"):
        try:
            sdk.get_secrets()
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"binding {name} failed: {type(err).__name__}: {err}")
    return sdk


def fetch(sdk: SecretsManager, uid: str):
    """The record `uid` as the device sees it now (exactly one, decrypted without error)."""
    resp = sdk.get_secrets([uid], full_response=True)
    assert resp.bad_records == [] and resp.bad_folders == [], (resp.bad_records, resp.bad_folders)
    got = [r for r in resp.records if r.uid == uid]
    assert len(got) == 1 and len(resp.records) == 1, (
        f"get_secrets([{uid}]) returned {[r.uid for r in resp.records]}"
    )
    return got[0]


def visible(sdk: SecretsManager, uid: str) -> bool:
    return [r.uid for r in sdk.get_secrets([uid])] == [uid]


def folder_map(sdk: SecretsManager) -> Dict[str, tuple]:
    """get_folders as {uid: (name, parent uid or "")}."""
    out: Dict[str, tuple] = {}
    for folder in sdk.get_folders():
        assert folder.folder_uid not in out, f"get_folders listed {folder.folder_uid} twice"
        out[folder.folder_uid] = (folder.name, folder.parent_uid)
    return out


def expect_error(call: Callable[[], Any], code: str, what: str, contains: Optional[str] = None) -> str:
    """The call must fail with the server's JSON error `code` (the SDK raises
    KeeperError("Error: <code>, message=<message>")); returns the message text."""
    try:
        with deadline(REFUSAL_DEADLINE_SECONDS, what):
            result = call()
    except KeeperError as err:
        text = str(err)
        assert text.startswith(f"Error: {code}, message="), (
            f"{what}: expected the server's {code} error, got KeeperError {text!r}"
        )
        if contains is not None:
            assert contains in text, f"{what}: {contains!r} not in {text!r}"
        return text
    except Exception as err:  # noqa: BLE001 - anything else is a failure
        pytest.fail(f"{what}: expected KeeperError 'Error: {code}, ...', got {type(err).__name__}: {err}")
    pytest.fail(f"{what}: the call succeeded but must be refused (returned {result!r})")


def results_by_uid(results: Any, key: str) -> Dict[str, dict]:
    """The per-item list of delete_secret / delete_folder, by uid (each uid once)."""
    assert isinstance(results, list), f"expected a list of per-item results, got {results!r}"
    out: Dict[str, dict] = {}
    for item in results:
        assert isinstance(item, dict) and isinstance(item.get(key), str), item
        assert isinstance(item.get("responseCode"), str), item
        assert item[key] not in out, f"{item[key]} reported twice: {results}"
        out[item[key]] = item
    return out


def file_uids(record) -> List[str]:
    return [f.f["fileUid"] for f in record.files]


def file_ref(record) -> List[str]:
    """Values of the record's fileRef field(s), in order."""
    refs: List[str] = []
    for field in record.dict.get("fields") or []:
        if field.get("type") == "fileRef":
            refs += field.get("value") or []
    return refs


def stored_objects(server: CofferServer) -> Dict[str, int]:
    """Every file under DATA_DIR/files/objects/ (README "Files"): name -> size."""
    root = server.data_dir / "files" / "objects"
    return {p.name: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def incoming_files(server: CofferServer) -> List[str]:
    """Partial uploads being received (DATA_DIR/files/incoming/); empty when none is under way."""
    root = server.data_dir / "files" / "incoming"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def owner_record(server: CofferServer, uid: str) -> dict:
    return server.cli("vault", "record", "get", positional=[uid])


def owner_records_in(server: CofferServer, folder_uid: str) -> Dict[str, dict]:
    out = server.cli("vault", "record", "list", f"--folder={folder_uid}")
    records = out.get("records")
    assert isinstance(records, list), out
    return {r["uid"]: r for r in records}


def owner_folders(server: CofferServer) -> Dict[str, dict]:
    out = server.cli("vault", "folder", "list")
    folders = out.get("folders")
    assert isinstance(folders, list), out
    return {f["uid"]: f for f in folders}


def owner_download(server: CofferServer, record_uid: str, file_uid: str, target: Path) -> bytes:
    out = server.cli("vault", "file", "download", "-o", str(target), positional=[record_uid, file_uid])
    data = target.read_bytes()
    assert out.get("size") == len(data), out
    return data


def rfc6238(secret_b32: str, unix_time: int, digits: int = 6, period: int = 30, digest=hashlib.sha1) -> str:
    """Reference TOTP (RFC 6238 over RFC 4226 dynamic truncation)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    mac = hmac.new(key, struct.pack(">Q", unix_time // period), digest).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % (10**digits)).zfill(digits)


# ---------------------------------------------------------------------------------------------
# Other official SDKs, driven one operation per process (tests/js/ksm.cjs, official_ksm)
# ---------------------------------------------------------------------------------------------

# One SDK call is a round trip or two; anything slower means the SDK is looping.
DRIVER_TIMEOUT_SECONDS = 60


class DriverError(Exception):
    """An operation the SDK under test reported as failed (its message)."""


def run_driver(argv: Sequence[str], env: dict, what: str, cwd: Optional[Path] = None) -> Any:
    """Runs a driver that prints one JSON line, {"ok": RESULT} (exit 0) or {"error": MESSAGE}
    (exit 1); returns RESULT or raises DriverError(MESSAGE)."""
    proc = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_SECONDS
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{what}: the driver printed nothing (exit {proc.returncode}); stderr:\n{proc.stderr}"
    out = json.loads(lines[-1])
    if "error" in out:
        assert proc.returncode == 1, (what, proc.returncode, out)
        raise DriverError(out["error"])
    assert proc.returncode == 0, (what, proc.returncode, proc.stderr)
    return out["ok"]


def driver_fails(call: Callable[[], Any], contains: str, what: str) -> str:
    """The driver call must fail with a message containing `contains`; returns the message."""
    try:
        result = call()
    except DriverError as err:
        assert contains in str(err), f"{what}: {contains!r} not in {str(err)!r}"
        return str(err)
    pytest.fail(f"{what} succeeded but must be refused (returned {result!r})")
