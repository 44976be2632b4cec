"""The KSM write path (PROTOCOL.md §5.3-§5.10, §14 items 42-59) with the official Python SDK.

A real `coffer server` is provisioned through `coffer vault ...`; app W gets the folder
`Writable` (with `W Inner/W Deep`) as an EDITABLE share and `Read Only` (with `RO Inner`) as a
read-only share; app R gets `Writable` read-only. Every change is made through the unmodified
`keeper_secrets_manager_core` 17.3.0 and read back through the SDK and through the owner CLI.
Coffer's own choices where the protocol leaves room are in docs/protocol-decisions.md.
"""

from __future__ import annotations

import copy
import os
import time
from types import SimpleNamespace

import pytest
import requests
from keeper_secrets_manager_core.dto.dtos import KeeperFileUpload, RecordCreate, RecordField
from keeper_secrets_manager_core.dto.payload import CreateOptions, QueryOptions

from ksm_helpers import (
    UNKNOWN_UID,
    bound_client,
    canonical,
    expect_error,
    fetch,
    file_ref,
    file_uids,
    folder_map,
    incoming_files,
    owner_download,
    owner_folders,
    owner_record,
    owner_records_in,
    results_by_uid,
    stored_objects,
    visible,
)

# Encrypted size of an attachment: AES-GCM adds a 12-byte nonce and a 16-byte tag.
GCM_OVERHEAD = 28

LOGIN_RECORDS = {
    # key: (folder key, title)
    "edit": ("writable", "Edit Me"),
    "stale": ("writable", "Stale Target"),
    "tx_commit": ("writable", "Rotation Commit"),
    "tx_rollback": ("writable", "Rotation Rollback"),
    "tx_second": ("writable", "Second Update Target"),
    "files": ("writable", "File Holder"),
    "links": ("writable", "Link Removal"),
    "links_tx": ("writable", "Link Removal In Transaction"),
    "reader_target": ("writable", "Reader Target"),
    "keep_root": ("writable", "Keeps Root Non-Empty"),
    "in_deep": ("w_deep", "Deep Record"),
    "ro_target": ("readonly", "Read Only Target"),
    "ro_inner_rec": ("ro_inner", "Read Only Inner"),
}


@pytest.fixture(scope="module")
def wv(coffer_server, owner):
    server = coffer_server
    folders = {}
    for key, name, parent in (
        ("writable", "Writable", None),
        ("w_inner", "W Inner", "writable"),
        ("w_deep", "W Deep", "w_inner"),
        ("readonly", "Read Only", None),
        ("ro_inner", "RO Inner", "readonly"),
    ):
        args = ["vault", "folder", "create"] + ([f"--parent={folders[parent]}"] if parent else [])
        folders[key] = server.cli_uid(*args, positional=[name])

    records = {}
    for key, (folder, title) in LOGIN_RECORDS.items():
        records[key] = server.cli_uid(
            "vault", "record", "add", f"--folder={folders[folder]}", "--type", "login",
            "--title", title, "--field", f"login={key}@example.com", "--field", f"password={key}-pass",
            "--field", "url=https://orig.example.com", "--custom", "Environment=prod",
            "--notes", f"notes of {key}",
        )

    app_w = server.cli_uid("vault", "app", "create", positional=["Write Path W"])
    server.cli("vault", "app", "share", "--editable", positional=[app_w, folders["writable"]])
    server.cli("vault", "app", "share", positional=[app_w, folders["readonly"]])
    app_r = server.cli_uid("vault", "app", "create", positional=["Write Path R"])
    server.cli("vault", "app", "share", positional=[app_r, folders["writable"]])

    return SimpleNamespace(
        server=server,
        folders=folders,
        records=records,
        w=bound_client(server, app_w, "writer"),
        r=bound_client(server, app_r, "reader"),
    )


def login_create(title: str, login: str, password: str, notes: str = None) -> RecordCreate:
    rc = RecordCreate("login", title)
    rc.fields = [
        RecordField(field_type="login", value=[login]),
        RecordField(field_type="password", value=[password]),
        RecordField(field_type="url", value=["https://created.example.com"]),
    ]
    rc.custom = [RecordField(field_type="text", value=["custom-" + login], label="Created Label")]
    if notes:
        rc.notes = notes
    return rc


def history_len(server, uid: str) -> int:
    out = server.cli("vault", "record", "history", positional=[uid])
    return len(out["revisions"])


# ---------------------------------------------------------------------------------------------
# Shares
# ---------------------------------------------------------------------------------------------


def test_editable_flags_follow_the_shares(wv):
    for key in ("edit", "in_deep"):
        assert fetch(wv.w, wv.records[key]).is_editable is True, key
        assert fetch(wv.r, wv.records[key]).is_editable is False, key
    for key in ("ro_target", "ro_inner_rec"):
        assert fetch(wv.w, wv.records[key]).is_editable is False, key
        assert not visible(wv.r, wv.records[key]), key


# ---------------------------------------------------------------------------------------------
# update_secret (§5.3, §14 items 42-45)
# ---------------------------------------------------------------------------------------------


def test_save_standard_and_custom_fields_title_and_notes(wv):
    uid = wv.records["edit"]
    rec = fetch(wv.w, uid)
    r0 = rec.revision
    rec.field("login", value="bob@example.com")
    rec.field("password", value="N3w-pass!")
    rec.field("url", value=["https://b.example.com", "https://c.example.com"])
    rec.set_custom_field_value("Environment", "staging")
    rec.add_custom_field(field_type="text", label="Added Later", value="added-value")
    rec.title = "Edited Title"
    rec.dict["notes"] = "new notes\nsecond line"
    rec._update()  # the SDK's own way of folding title/dict changes into raw_json
    expected = copy.deepcopy(rec.dict)
    assert wv.w.save(rec) is None  # Python's save returns nothing; errors raise

    got = fetch(wv.w, uid)
    assert canonical(got.dict) == canonical(expected)
    assert got.title == "Edited Title"
    assert got.password == "N3w-pass!"
    assert got.field("url") == ["https://b.example.com", "https://c.example.com"]
    assert got.custom_field("Environment", single=True) == "staging"
    assert got.custom_field("Added Later", single=True) == "added-value"
    assert got.dict["notes"] == "new notes\nsecond line"
    assert isinstance(got.revision, int) and got.revision > r0

    # Another app and the owner see the same bytes.
    assert canonical(fetch(wv.r, uid).dict) == canonical(expected)
    owned = owner_record(wv.server, uid)
    assert canonical(owned["data"]) == canonical(expected)
    assert owned["revision"] == got.revision

    # A save based on the new revision works again and raises the revision again.
    got.dict["notes"] = "third version"
    got._update()
    wv.w.save(got)
    again = fetch(wv.w, uid)
    assert again.dict["notes"] == "third version"
    assert again.revision > got.revision


def test_stale_revision_save_is_refused_and_changes_nothing(wv):
    uid = wv.records["stale"]
    first = fetch(wv.w, uid)
    second = fetch(wv.w, uid)
    assert first.revision == second.revision

    first.field("password", value="first-writer")
    wv.w.save(first)
    after_first = fetch(wv.w, uid)
    assert after_first.password == "first-writer"
    revisions = history_len(wv.server, uid)

    second.field("password", value="second-writer")
    expect_error(
        lambda: wv.w.save(second), "out_of_sync", "save at a stale revision",
        contains=f"Record {uid} is out of sync",
    )
    # The SDK does not refresh the revision after a save: saving the same object again is stale too.
    first.field("password", value="first-writer-again")
    expect_error(
        lambda: wv.w.save(first), "out_of_sync", "second save of the same in-memory record",
        contains=f"Record {uid} is out of sync",
    )

    now = fetch(wv.w, uid)
    assert now.password == "first-writer"
    assert now.revision == after_first.revision
    assert canonical(now.dict) == canonical(after_first.dict)
    assert history_len(wv.server, uid) == revisions
    assert owner_record(wv.server, uid)["revision"] == after_first.revision


# ---------------------------------------------------------------------------------------------
# Transactions (§5.3, §5.4, §14 item 46; docs/protocol-decisions.md "Transactions")
# ---------------------------------------------------------------------------------------------


def test_rotation_transaction_commit_keeps_the_new_value(wv):
    uid = wv.records["tx_commit"]
    rec = fetch(wv.w, uid)
    r0 = rec.revision
    rec.field("password", value="rotated-1")
    wv.w.save(rec, "rotation")

    # Applied at once: the machine installing the new credential can read it.
    mid = fetch(wv.w, uid)
    assert mid.password == "rotated-1"
    assert mid.revision > r0

    assert wv.w.complete_transaction(uid) is True
    done = fetch(wv.w, uid)
    assert done.password == "rotated-1"
    assert done.revision == mid.revision  # finalising forgets the backup, the data stays
    assert canonical(done.dict) == canonical(mid.dict)

    expect_error(
        lambda: wv.w.complete_transaction(uid), "bad_request", "finalize without a transaction",
        contains=f"Record {uid} has no open transaction",
    )
    expect_error(
        lambda: wv.w.complete_transaction(uid, rollback=True), "bad_request",
        "rollback after finalize", contains=f"Record {uid} has no open transaction",
    )
    assert fetch(wv.w, uid).password == "rotated-1"

    # The transaction is closed: an ordinary save is accepted.
    done.field("password", value="after-commit")
    wv.w.save(done)
    assert fetch(wv.w, uid).password == "after-commit"
    assert owner_record(wv.server, uid)["data"]["fields"] == fetch(wv.w, uid).dict["fields"]


def test_transaction_rollback_restores_the_old_value_as_a_new_revision(wv):
    uid = wv.records["tx_rollback"]
    rec = fetch(wv.w, uid)
    old = copy.deepcopy(rec.dict)
    rec.field("password", value="temporary")
    rec.field("login", value="temporary-login")
    wv.w.save(rec, "general")

    mid = fetch(wv.w, uid)
    assert mid.password == "temporary"
    assert mid.revision > rec.revision

    assert wv.w.complete_transaction(uid, rollback=True) is True
    back = fetch(wv.w, uid)
    assert canonical(back.dict) == canonical(old)
    assert back.revision > mid.revision
    owned = owner_record(wv.server, uid)
    assert canonical(owned["data"]) == canonical(old)
    assert owned["revision"] == back.revision

    # Whoever read the transaction's value now holds a stale revision.
    mid.field("password", value="based-on-rolled-back")
    expect_error(
        lambda: wv.w.save(mid), "out_of_sync", "save based on a rolled-back revision",
        contains=f"Record {uid} is out of sync",
    )
    expect_error(
        lambda: wv.w.complete_transaction(uid, rollback=True), "bad_request", "second rollback",
        contains=f"Record {uid} has no open transaction",
    )
    assert canonical(fetch(wv.w, uid).dict) == canonical(old)


def test_second_update_during_an_open_transaction_is_refused(wv):
    uid = wv.records["tx_second"]
    rec = fetch(wv.w, uid)
    old = copy.deepcopy(rec.dict)
    rec.field("password", value="in-transaction")
    wv.w.save(rec, "rotation")
    mid = fetch(wv.w, uid)
    revisions = history_len(wv.server, uid)

    for transaction_type in (None, "rotation", "general"):
        attempt = fetch(wv.w, uid)  # current revision, so only the open transaction is in the way
        attempt.field("password", value=f"second-{transaction_type}")
        expect_error(
            lambda: wv.w.save(attempt, transaction_type), "bad_request",
            f"save ({transaction_type}) during an open transaction",
            contains=f"Record {uid} has an open transaction",
        )
    # Attachments are refused as well while the transaction is open.
    holder = fetch(wv.w, uid)
    expect_error(
        lambda: wv.w.upload_file(holder, KeeperFileUpload("x.txt", "x", "text/plain", b"x")),
        "bad_request", "add_file during an open transaction",
        contains=f"Record {uid} has an open transaction",
    )

    now = fetch(wv.w, uid)
    assert now.password == "in-transaction"
    assert now.revision == mid.revision
    assert now.files == []
    assert history_len(wv.server, uid) == revisions

    wv.w.complete_transaction(uid, rollback=True)
    assert canonical(fetch(wv.w, uid).dict) == canonical(old)


@pytest.fixture(scope="module")
def short(limited_server):
    """Records and an editable app on the server started with --transaction-timeout 3s."""
    server = limited_server
    folder = server.cli_uid("vault", "folder", "create", positional=["Expiry"])
    records = {}
    for key in ("finalize", "write"):
        records[key] = server.cli_uid(
            "vault", "record", "add", f"--folder={folder}", "--type", "login", "--title",
            f"Expiry {key}", "--field", "login=expiry", "--field", f"password=old-{key}",
        )
    app = server.cli_uid("vault", "app", "create", positional=["Expiry App"])
    server.cli("vault", "app", "share", "--editable", positional=[app, folder])
    return SimpleNamespace(server=server, records=records, sdk=bound_client(server, app, "expiry"))


def test_transaction_expires_and_rolls_back(short):
    sdk = short.sdk
    old, mid = {}, {}
    for key, uid in short.records.items():
        rec = fetch(sdk, uid)
        old[key] = copy.deepcopy(rec.dict)
        rec.field("password", value=f"will-expire-{key}")
        sdk.save(rec, "rotation")
        mid[key] = fetch(sdk, uid)
        assert mid[key].password == f"will-expire-{key}"

    time.sleep(4)  # > --transaction-timeout 3s; the minute janitor has not run yet

    # Expiry is checked before every write: finalising finds nothing to finalise ...
    uid = short.records["finalize"]
    expect_error(
        lambda: sdk.complete_transaction(uid), "bad_request", "finalize after expiry",
        contains=f"Record {uid} has no open transaction",
    )
    back = fetch(sdk, uid)
    assert canonical(back.dict) == canonical(old["finalize"])
    assert back.revision > mid["finalize"].revision

    # ... and an update based on the transaction's revision finds the rollback's newer revision.
    uid = short.records["write"]
    mid["write"].field("password", value="after-expiry")
    expect_error(
        lambda: sdk.save(mid["write"]), "out_of_sync", "save at the expired transaction's revision",
        contains=f"Record {uid} is out of sync",
    )
    back = fetch(sdk, uid)
    assert canonical(back.dict) == canonical(old["write"])
    assert back.revision > mid["write"].revision
    # No transaction is left behind: a save at the current revision works.
    back.field("password", value="after-expiry")
    sdk.save(back)
    assert fetch(sdk, uid).password == "after-expiry"

    events = short.server.cli("vault", "audit", "--action", "transaction.expire")["events"]
    by_target = {}
    for event in events:
        assert event["action"] == "transaction.expire", event
        by_target.setdefault(event["target"], []).append(event)
    for key, uid in short.records.items():
        assert len(by_target.get(uid, [])) == 1, (key, events)
        assert by_target[uid][0]["actor"] == "system", by_target[uid]


# ---------------------------------------------------------------------------------------------
# create_secret (§5.5, §14 items 48-50)
# ---------------------------------------------------------------------------------------------


def test_create_secret_in_the_shared_folder(wv):
    root = wv.folders["writable"]
    rc = login_create("Created At Root", "root-user", "root-pass", notes="created notes")
    expected = rc.to_dict()
    uid = wv.w.create_secret(root, rc)
    assert isinstance(uid, str) and len(uid) == 22

    rec = fetch(wv.w, uid)
    assert canonical(rec.dict) == canonical(expected)
    assert rec.title == "Created At Root" and rec.type == "login"
    assert rec.password == "root-pass"
    assert rec.folder_uid == root
    assert rec.inner_folder_uid is None
    assert rec.is_editable is True
    assert isinstance(rec.revision, int) and not isinstance(rec.revision, bool)
    assert rec.files == []

    # The read-only app sees it too, and the owner can decrypt it (its own key copy).
    assert canonical(fetch(wv.r, uid).dict) == canonical(expected)
    owned = owner_record(wv.server, uid)
    assert canonical(owned["data"]) == canonical(expected)
    assert owned["folder_uid"] == root
    assert owned["shared_folder_uid"] == root
    assert owned["revision"] == rec.revision

    # The new record can be updated like any other.
    rec.field("password", value="changed-after-create")
    wv.w.save(rec)
    assert fetch(wv.w, uid).password == "changed-after-create"


def test_create_secret_with_options_in_sub_folders(wv):
    root, inner, deep = (wv.folders[k] for k in ("writable", "w_inner", "w_deep"))
    made = {}
    for where, sub in (("inner", inner), ("deep", deep)):
        rc = login_create(f"Created In {where}", f"{where}-user", f"{where}-pass")
        uid = wv.w.create_secret_with_options(CreateOptions(root, sub), rc)
        made[where] = (uid, sub, rc.to_dict())

    for where, (uid, sub, expected) in made.items():
        rec = fetch(wv.w, uid)
        assert canonical(rec.dict) == canonical(expected), where
        assert rec.folder_uid == root, where
        assert rec.inner_folder_uid == sub, where
        assert rec.is_editable is True, where
        assert fetch(wv.r, uid).inner_folder_uid == sub, where
        owned = owner_record(wv.server, uid)
        assert canonical(owned["data"]) == canonical(expected), where
        assert owned["folder_uid"] == sub, where
        assert owned["shared_folder_uid"] == root, where

    in_deep = wv.w.get_secrets_with_options(QueryOptions(records_filter=None, folders_filter=[deep]))
    assert made["deep"][0] in [r.uid for r in in_deep]
    assert made["inner"][0] not in [r.uid for r in in_deep]


def test_create_secret_outside_the_shared_folder_tree_is_refused(wv):
    root = wv.folders["writable"]
    before = set(owner_records_in(wv.server, root)) | set(owner_records_in(wv.server, wv.folders["readonly"]))

    # A sub-folder of another shared folder as subFolderUid.
    rc = login_create("Misplaced", "misplaced", "misplaced-pass")
    expect_error(
        lambda: wv.w.create_secret_with_options(CreateOptions(root, wv.folders["ro_inner"]), rc),
        "bad_request", "create_secret with a foreign sub-folder",
        contains=f"Sub-folder {wv.folders['ro_inner']} is not inside shared folder {root}",
    )
    # A sub-folder given as folderUid (it must be the shared folder itself).
    expect_error(
        lambda: wv.w.create_secret_with_options(CreateOptions(wv.folders["w_inner"], None), rc),
        "bad_request", "create_secret with a sub-folder as folderUid",
        contains="folderUid must be the shared folder",
    )
    after = set(owner_records_in(wv.server, root)) | set(owner_records_in(wv.server, wv.folders["readonly"]))
    assert after == before

    # The same for folders: a parent from another shared folder's tree.
    folders = folder_map(wv.w)
    expect_error(
        lambda: wv.w.create_folder(CreateOptions(root, wv.folders["ro_inner"]), "Misplaced Folder"),
        "bad_request", "create_folder with a foreign parent",
        contains=f"Parent folder {wv.folders['ro_inner']} is not inside shared folder {root}",
    )
    assert folder_map(wv.w) == folders


# ---------------------------------------------------------------------------------------------
# delete_secret (§5.6, §14 item 51)
# ---------------------------------------------------------------------------------------------


def test_delete_secret(wv):
    root = wv.folders["writable"]
    doomed = wv.w.create_secret(root, login_create("Doomed", "doomed", "doomed-pass"))
    survivor = wv.w.create_secret_with_options(
        CreateOptions(root, wv.folders["w_inner"]), login_create("Survivor", "survivor", "s-pass")
    )
    assert visible(wv.w, doomed) and visible(wv.w, survivor)
    attachment = wv.w.upload_file(
        fetch(wv.w, doomed), KeeperFileUpload("d.bin", "d", "application/octet-stream", b"doomed")
    )
    assert attachment in stored_objects(wv.server)

    results = results_by_uid(wv.w.delete_secret([doomed, UNKNOWN_UID]), "recordUid")
    assert set(results) == {doomed, UNKNOWN_UID}
    assert results[doomed]["responseCode"] == "ok"
    assert results[doomed].get("errorMessage") is None
    assert results[UNKNOWN_UID]["responseCode"] == "error"
    assert isinstance(results[UNKNOWN_UID].get("errorMessage"), str) and results[UNKNOWN_UID]["errorMessage"]

    assert not visible(wv.w, doomed)
    assert not visible(wv.r, doomed)
    assert doomed not in owner_records_in(wv.server, root)
    assert attachment not in stored_objects(wv.server), "the deleted record's attachment is still stored"
    assert visible(wv.w, survivor)

    # Deleting it again: a per-item error, the call itself succeeds.
    again = results_by_uid(wv.w.delete_secret(doomed), "recordUid")
    assert again[doomed]["responseCode"] == "error"

    results = results_by_uid(wv.w.delete_secret(survivor), "recordUid")
    assert results == {survivor: results[survivor]} and results[survivor]["responseCode"] == "ok"
    assert not visible(wv.w, survivor)
    assert survivor not in owner_records_in(wv.server, root)


# ---------------------------------------------------------------------------------------------
# Folders (§5.7-§5.9, §14 items 52-54)
# ---------------------------------------------------------------------------------------------


def test_get_folders_lists_both_shares(wv):
    f = wv.folders
    got = folder_map(wv.w)
    assert got[f["writable"]] == ("Writable", "")
    assert got[f["w_inner"]] == ("W Inner", f["writable"])
    assert got[f["w_deep"]] == ("W Deep", f["w_inner"])
    assert got[f["readonly"]] == ("Read Only", "")
    assert got[f["ro_inner"]] == ("RO Inner", f["readonly"])
    # Nothing from other owners' or apps' folders: every folder hangs from one of the two shares.
    for uid in got:
        node = uid
        while got[node][1]:
            node = got[node][1]
        assert node in (f["writable"], f["readonly"]), (uid, got[uid])
    for folder in wv.w.get_folders():
        assert isinstance(folder.folder_key, bytes) and len(folder.folder_key) == 32, folder.name


def test_create_nested_folders_and_rename(wv):
    root = wv.folders["writable"]
    top = wv.w.create_folder(CreateOptions(root, None), "Made By SDK")
    nested = wv.w.create_folder(CreateOptions(root, top), "Nested By SDK")
    assert len(top) == 22 and len(nested) == 22 and top != nested

    got = folder_map(wv.w)
    assert got[top] == ("Made By SDK", root)
    assert got[nested] == ("Nested By SDK", top)
    # The other app decrypts the same names with the keys the SDK stored.
    assert folder_map(wv.r)[nested] == ("Nested By SDK", top)
    owned = owner_folders(wv.server)
    assert (owned[top]["name"], owned[top]["parent_uid"], owned[top]["shared_folder_uid"]) == (
        "Made By SDK", root, root,
    )
    assert (owned[nested]["name"], owned[nested]["parent_uid"], owned[nested]["shared_folder_uid"]) == (
        "Nested By SDK", top, root,
    )

    # A record in the SDK-made folder (its key chain works end to end).
    rc = login_create("In SDK Folder", "sdk-folder-user", "sdk-folder-pass")
    uid = wv.w.create_secret_with_options(CreateOptions(root, nested), rc)
    assert fetch(wv.w, uid).inner_folder_uid == nested
    assert owner_record(wv.server, uid)["folder_uid"] == nested

    assert wv.w.update_folder(nested, "Renamed By SDK") is None
    assert folder_map(wv.w)[nested] == ("Renamed By SDK", top)
    assert folder_map(wv.r)[nested] == ("Renamed By SDK", top)
    assert owner_folders(wv.server)[nested]["name"] == "Renamed By SDK"
    assert owner_folders(wv.server)[top]["name"] == "Made By SDK"

    wv.w.update_folder(top, "Made And Renamed")
    assert folder_map(wv.w)[top] == ("Made And Renamed", root)
    assert owner_folders(wv.server)[top]["name"] == "Made And Renamed"


def test_delete_folder_with_and_without_force(wv):
    root = wv.folders["writable"]
    sdk = wv.w
    top = sdk.create_folder(CreateOptions(root, None), "Doomed Top")
    child = sdk.create_folder(CreateOptions(root, top), "Doomed Child")
    grandchild = sdk.create_folder(CreateOptions(root, child), "Doomed Grandchild")
    in_top = sdk.create_secret_with_options(CreateOptions(root, top), login_create("In Top", "t", "t-pass"))
    in_child = sdk.create_secret_with_options(CreateOptions(root, child), login_create("In Child", "c", "c-pass"))
    attachment = sdk.upload_file(
        fetch(sdk, in_child), KeeperFileUpload("c.bin", "c", "application/octet-stream", b"child")
    )
    only_folders = sdk.create_folder(CreateOptions(root, None), "Only Sub-Folders")
    empty_sub = sdk.create_folder(CreateOptions(root, only_folders), "Empty Sub")
    empty = sdk.create_folder(CreateOptions(root, None), "Empty")

    # Without force: a folder with records, or with only sub-folders, is refused per item.
    results = results_by_uid(sdk.delete_folder([top, only_folders, UNKNOWN_UID]), "folderUid")
    assert set(results) == {top, only_folders, UNKNOWN_UID}
    for uid in (top, only_folders):
        assert results[uid]["responseCode"] == "error", results[uid]
        assert "is not empty" in results[uid]["errorMessage"], results[uid]
    assert results[UNKNOWN_UID]["responseCode"] == "error"
    got = folder_map(sdk)
    for uid in (top, child, grandchild, only_folders, empty_sub):
        assert uid in got, uid
    assert visible(sdk, in_top) and visible(sdk, in_child)

    # An empty folder goes without force.
    results = results_by_uid(sdk.delete_folder(empty), "folderUid")
    assert results[empty]["responseCode"] == "ok" and results[empty].get("errorMessage") is None
    assert empty not in folder_map(sdk)
    assert empty not in owner_folders(wv.server)

    # With force: the folder, all its sub-folders and the records in them.
    results = results_by_uid(sdk.delete_folder([top], force_deletion=True), "folderUid")
    assert results == {top: results[top]} and results[top]["responseCode"] == "ok", results
    got = folder_map(sdk)
    owned = owner_folders(wv.server)
    for uid in (top, child, grandchild):
        assert uid not in got, uid
        assert uid not in owned, uid
    assert sdk.get_secrets([in_top, in_child]) == []
    owned_records = owner_records_in(wv.server, root)
    assert in_top not in owned_records and in_child not in owned_records
    assert attachment not in stored_objects(wv.server), "attachment of a force-deleted record is still stored"
    # Siblings are untouched.
    assert only_folders in got and empty_sub in got
    assert visible(sdk, wv.records["edit"])

    results = results_by_uid(sdk.delete_folder([only_folders], force_deletion=True), "folderUid")
    assert results[only_folders]["responseCode"] == "ok"
    assert only_folders not in folder_map(sdk) and empty_sub not in folder_map(sdk)


def test_shared_folder_root_cannot_be_deleted_by_a_device(wv):
    root = wv.folders["writable"]
    for force in (False, True):
        results = results_by_uid(wv.w.delete_folder([root], force_deletion=force), "folderUid")
        assert results[root]["responseCode"] == "error", (force, results)
        assert f"Folder {root} is a shared folder" in results[root]["errorMessage"], results
    got = folder_map(wv.w)
    assert got[root] == ("Writable", "")
    assert got[wv.folders["w_deep"]] == ("W Deep", wv.folders["w_inner"])
    assert root in owner_folders(wv.server)
    assert visible(wv.w, wv.records["keep_root"])
    assert visible(wv.w, wv.records["in_deep"])


# ---------------------------------------------------------------------------------------------
# Files (§5.10, §5.11, §14 items 55-58)
# ---------------------------------------------------------------------------------------------


def check_uploaded(wv, record_uid, file_uid, data, name, title, mime, tmp_path):
    rec = fetch(wv.w, record_uid)
    files = {f.f["fileUid"]: f for f in rec.files}
    assert file_uid in files, (file_uid, list(files))
    file = files[file_uid]
    assert (file.name, file.title, file.type, file.size) == (name, title, mime, len(data))
    assert file_uid in file_ref(rec)
    assert file.get_file_data() == data
    # The owner downloads and decrypts the same content.
    assert owner_download(wv.server, record_uid, file_uid, tmp_path / f"{file_uid}.owner") == data
    owned = {f["uid"]: f for f in owner_record(wv.server, record_uid)["files"]}
    assert owned[file_uid]["size"] == len(data) + GCM_OVERHEAD
    # Stored once, encrypted, under DATA_DIR/files/objects/.
    assert stored_objects(wv.server).get(file_uid) == len(data) + GCM_OVERHEAD
    return rec


def test_upload_file_and_download(wv, tmp_path):
    uid = wv.records["files"]
    rec = fetch(wv.w, uid)
    r0 = rec.revision
    fields_before = copy.deepcopy(rec.dict["fields"])

    small = b"hello from the write-path suite\n" * 10
    small_uid = wv.w.upload_file(rec, KeeperFileUpload("hello.txt", "Hello Title", "text/plain", small))
    assert isinstance(small_uid, str) and len(small_uid) == 22
    after_small = check_uploaded(wv, uid, small_uid, small, "hello.txt", "Hello Title", "text/plain", tmp_path)
    assert after_small.revision > r0
    # Only the fileRef changed in the record's data.
    assert [f for f in after_small.dict["fields"] if f["type"] != "fileRef"] == [
        f for f in fields_before if f["type"] != "fileRef"
    ]

    big = os.urandom(1024 * 1024)
    path = tmp_path / "random.bin"
    path.write_bytes(big)
    big_uid = wv.w.upload_file_path(after_small, str(path))
    after_big = check_uploaded(
        wv, uid, big_uid, big, "random.bin", "random.bin", "application/octet-stream", tmp_path
    )
    assert after_big.revision > after_small.revision
    assert sorted(file_uids(after_big)) == sorted([small_uid, big_uid])
    assert sorted(file_ref(after_big)) == sorted([small_uid, big_uid])
    # The read-only app downloads it too.
    reader_files = {f.f["fileUid"]: f for f in fetch(wv.r, uid).files}
    assert reader_files[big_uid].get_file_data() == big

    # Larger than the API's request-body limit: uploads are streamed (limit --max-file-size, 100M).
    huge = os.urandom(9 * 1024 * 1024)
    huge_uid = wv.w.upload_file(after_big, KeeperFileUpload("huge.bin", "Huge", "application/octet-stream", huge))
    check_uploaded(wv, uid, huge_uid, huge, "huge.bin", "Huge", "application/octet-stream", tmp_path)
    assert incoming_files(wv.server) == []


def test_upload_with_a_stale_owner_revision_is_refused(wv):
    uid = wv.records["files"]
    stale = fetch(wv.w, uid)
    fresh = fetch(wv.w, uid)
    fresh.dict["notes"] = "bumped"
    fresh._update()
    wv.w.save(fresh)
    bumped = fetch(wv.w, uid)
    objects = stored_objects(wv.server)
    expect_error(
        lambda: wv.w.upload_file(stale, KeeperFileUpload("late.txt", "late", "text/plain", b"late")),
        "out_of_sync", "add_file with a stale ownerRecordRevision",
        contains=f"Record {uid} is out of sync",
    )
    now = fetch(wv.w, uid)
    assert now.revision == bumped.revision
    assert sorted(file_uids(now)) == sorted(file_uids(bumped))
    assert stored_objects(wv.server) == objects


def test_remove_a_file_link(wv, tmp_path):
    uid = wv.records["links"]
    rec = fetch(wv.w, uid)
    keep_data, drop_data = os.urandom(3000), os.urandom(4000)
    keep = wv.w.upload_file(rec, KeeperFileUpload("keep.bin", "Keep", "application/octet-stream", keep_data))
    rec = fetch(wv.w, uid)
    drop = wv.w.upload_file(rec, KeeperFileUpload("drop.bin", "Drop", "application/octet-stream", drop_data))
    rec = fetch(wv.w, uid)
    assert sorted(file_uids(rec)) == sorted([keep, drop])
    assert set(stored_objects(wv.server)) >= {keep, drop}
    old_url = next(f.f["url"] for f in rec.files if f.f["fileUid"] == drop)
    before = rec.revision

    wv.w.save(rec, links_to_remove=[drop])

    now = fetch(wv.w, uid)
    assert file_uids(now) == [keep]
    assert file_ref(now) == [keep]
    assert now.revision > before
    assert now.files[0].get_file_data() == keep_data
    assert [f["uid"] for f in owner_record(wv.server, uid)["files"]] == [keep]
    objects = stored_objects(wv.server)
    assert drop not in objects, "the removed attachment's content is still stored"
    assert keep in objects
    # The download link issued before the removal no longer serves the content.
    assert requests.get(old_url, timeout=30).status_code == 404

    # links2Remove naming another record's attachment leaves that attachment alone.
    other = fetch(wv.w, wv.w.create_secret(wv.folders["writable"], login_create("Other", "other", "o-pass")))
    wv.w.save(other, links_to_remove=[keep])
    assert file_uids(fetch(wv.w, uid)) == [keep]
    assert fetch(wv.w, uid).files[0].get_file_data() == keep_data
    assert keep in stored_objects(wv.server)


def test_links_to_remove_inside_a_transaction(wv):
    """docs/protocol-decisions.md: links2Remove in a transaction is applied when it is finalised
    and discarded on rollback (a rollback brings the attachments back with the data)."""
    uid = wv.records["links_tx"]
    first, second = os.urandom(1500), os.urandom(2500)
    a = wv.w.upload_file(fetch(wv.w, uid), KeeperFileUpload("a.bin", "A", "application/octet-stream", first))
    b = wv.w.upload_file(fetch(wv.w, uid), KeeperFileUpload("b.bin", "B", "application/octet-stream", second))
    rec = fetch(wv.w, uid)
    assert sorted(file_ref(rec)) == sorted([a, b])
    old = copy.deepcopy(rec.dict)

    wv.w.save(rec, "rotation", links_to_remove=[a])
    mid = fetch(wv.w, uid)
    assert file_ref(mid) == [b]
    assert sorted(file_uids(mid)) == sorted([a, b]), "removed before the transaction was finalised"
    assert a in stored_objects(wv.server)

    wv.w.complete_transaction(uid, rollback=True)
    back = fetch(wv.w, uid)
    assert canonical(back.dict) == canonical(old)
    assert sorted(file_uids(back)) == sorted([a, b])
    assert {f.f["fileUid"]: f for f in back.files}[a].get_file_data() == first

    wv.w.save(back, "rotation", links_to_remove=[a])
    wv.w.complete_transaction(uid)
    done = fetch(wv.w, uid)
    assert file_uids(done) == [b] and file_ref(done) == [b]
    assert done.files[0].get_file_data() == second
    assert a not in stored_objects(wv.server)
    assert [f["uid"] for f in owner_record(wv.server, uid)["files"]] == [b]


# ---------------------------------------------------------------------------------------------
# Refusals through read-only shares (§5.0.2, §14 items 42, 48, 51, 54, 55)
# ---------------------------------------------------------------------------------------------


def snapshot(wv, sdk, folder_key):
    """Everything a refused write could have changed, as the device and the owner see it."""
    root = wv.folders[folder_key]
    resp = sdk.get_secrets_with_options(QueryOptions(records_filter=None, folders_filter=[root]), full_response=True)
    assert resp.bad_records == [] and resp.bad_folders == []
    records = {r.uid: (r.revision, r.raw_json, sorted(file_uids(r))) for r in resp.records}
    owned = {
        uid: (r["revision"], canonical(r["data"]), sorted(f["uid"] for f in r["files"]))
        for uid, r in owner_records_in(wv.server, root).items()
    }
    folders = {uid: f for uid, f in owner_folders(wv.server).items() if f["shared_folder_uid"] == root}
    return records, owned, folders, folder_map(sdk), stored_objects(wv.server)


@pytest.mark.parametrize(
    "who,folder_key,sub_key,target_key",
    [
        ("writer on its read-only share", "readonly", "ro_inner", "ro_target"),
        ("reader on a folder another app may edit", "writable", "w_inner", "reader_target"),
    ],
)
def test_read_only_share_refuses_every_write(wv, who, folder_key, sub_key, target_key):
    sdk = wv.w if folder_key == "readonly" else wv.r
    root, sub, target = wv.folders[folder_key], wv.folders[sub_key], wv.records[target_key]
    before = snapshot(wv, sdk, folder_key)
    assert fetch(sdk, target).is_editable is False

    def denied(call, what):
        expect_error(call, "access_denied", f"{who}: {what}")

    rec = fetch(sdk, target)
    rec.field("password", value="not-allowed")
    denied(lambda: sdk.save(rec), "save")
    denied(lambda: sdk.save(rec, "rotation"), "save with a rotation transaction")
    denied(lambda: sdk.complete_transaction(target), "finalize")
    denied(lambda: sdk.complete_transaction(target, rollback=True), "rollback")
    denied(lambda: sdk.create_secret(root, login_create("Nope", "nope", "nope")), "create_secret")
    denied(
        lambda: sdk.create_secret_with_options(CreateOptions(root, sub), login_create("Nope", "n", "n")),
        "create_secret in a sub-folder",
    )
    denied(lambda: sdk.create_folder(CreateOptions(root, None), "Nope"), "create_folder")
    denied(lambda: sdk.create_folder(CreateOptions(root, sub), "Nope"), "create_folder in a sub-folder")
    denied(lambda: sdk.update_folder(sub, "Renamed"), "update_folder")
    denied(lambda: sdk.update_folder(root, "Renamed"), "update_folder of the shared folder")
    fresh = fetch(sdk, target)
    denied(
        lambda: sdk.upload_file(fresh, KeeperFileUpload("n.txt", "n", "text/plain", b"nope")),
        "upload_file (add_file)",
    )

    # The delete calls answer per item; the refusal names the read-only share.
    results = results_by_uid(sdk.delete_secret([target]), "recordUid")
    assert results[target]["responseCode"] == "error", results
    assert "read-only" in results[target]["errorMessage"], results
    for force in (False, True):
        results = results_by_uid(sdk.delete_folder([sub], force_deletion=force), "folderUid")
        assert results[sub]["responseCode"] == "error", (force, results)
        assert "read-only" in results[sub]["errorMessage"], results

    assert snapshot(wv, sdk, folder_key) == before
