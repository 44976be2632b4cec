#!/usr/bin/env node
// Runs one operation of the official Keeper Secrets Manager JavaScript SDK (17.5.0, unmodified)
// against a Coffer server and prints its outcome as one line of JSON. Driven by
// tests/conformance/test_js_sdk.py.
//
//   node ksm.cjs STORAGE_FILE OPERATION ARGS_JSON
//
// STORAGE_FILE is the SDK's own JSON config file (`localConfigStorage`); every operation but
// `init` reads the device's keys from it. The server's certificate is trusted through
// NODE_EXTRA_CA_CERTS: certificate checks are never turned off.
//
// Output: {"ok": RESULT} and exit code 0, or {"error": MESSAGE} and exit code 1.

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const ksm = require("@keeper-security/secrets-manager-core");

/** The SDK options for a device whose config is in `storagePath`. */
async function options(storagePath) {
  const storage = ksm.localConfigStorage(storagePath);
  // The custom server key (PROTOCOL.md §4.6) is kept in the config by `init`; JS writes the
  // options' values back into the storage on every call, so passing them again is harmless.
  return {
    storage,
    serverPublicKey: await storage.getString("serverPublicKey"),
    serverPublicKeyId: await storage.getString("serverPublicKeyId"),
  };
}

/** A record as the tests compare it: the decrypted data plus what the SDK adds. */
function summary(record) {
  return {
    uid: record.recordUid,
    revision: record.revision,
    folderUid: record.folderUid ?? null,
    innerFolderUid: record.innerFolderUid ?? null,
    data: record.data,
    files: (record.files ?? []).map((f) => ({ uid: f.fileUid, ...f.data })),
  };
}

/** The one record `uid` as the device sees it now. */
async function fetchRecord(opts, uid) {
  const secrets = await ksm.getSecrets(opts, [uid]);
  const found = secrets.records.filter((r) => r.recordUid === uid);
  if (found.length !== 1) {
    throw new Error(`record ${uid} not visible (got ${secrets.records.length} records)`);
  }
  return found[0];
}

/** Sets the values of the first standard field of each given type. */
function setFields(data, values) {
  for (const [type, value] of Object.entries(values ?? {})) {
    const field = (data.fields ?? []).find((f) => f.type === type);
    if (!field) {
      throw new Error(`record has no ${type} field`);
    }
    field.value = value;
  }
}

const sha256 = (bytes) => crypto.createHash("sha256").update(bytes).digest("hex");

const operations = {
  /** Prepares the storage from the base64 config `coffer vault client add` prints. */
  async init(storagePath, { config }) {
    const parsed = JSON.parse(Buffer.from(config, "base64").toString("utf8"));
    const storage = ksm.localConfigStorage(storagePath);
    // JS cannot bind from a config holding only `clientKey`: the token goes through
    // initializeStorage, with the host (and its port) given separately (PROTOCOL.md §2.2, §4.4).
    await ksm.initializeStorage(storage, parsed.clientKey, parsed.hostname);
    await storage.saveString("serverPublicKey", parsed.serverPublicKey);
    await storage.saveString("serverPublicKeyId", String(parsed.serverPublicKeyId));
    return { hostname: parsed.hostname };
  },

  async get_secrets(storagePath, { uids, folders }) {
    const opts = await options(storagePath);
    const secrets = await ksm.getSecrets2(opts, { recordsFilter: uids, foldersFilter: folders });
    return {
      appData: secrets.appData,
      warnings: secrets.warnings ?? [],
      records: secrets.records.map(summary),
    };
  },

  async get_folders(storagePath) {
    const folders = await ksm.getFolders(await options(storagePath));
    return folders.map((f) => ({ uid: f.folderUid, parentUid: f.parentUid ?? null, name: f.name }));
  },

  async by_title(storagePath, { title }) {
    const records = await ksm.getSecretsByTitle(await options(storagePath), title);
    return records.map((r) => r.recordUid);
  },

  async notation(storagePath, { notation }) {
    return ksm.getNotationResults(await options(storagePath), notation);
  },

  async totp(_storagePath, { url, at }) {
    return ksm.getTotpCode(url, at);
  },

  async download(storagePath, { uid, fileUid, path }) {
    const record = await fetchRecord(await options(storagePath), uid);
    const file = (record.files ?? []).find((f) => f.fileUid === fileUid);
    if (!file) {
      throw new Error(`record ${uid} has no file ${fileUid}`);
    }
    const bytes = await ksm.downloadFile(file);
    fs.writeFileSync(path, bytes);
    return { size: bytes.length, sha256: sha256(bytes) };
  },

  async upload(storagePath, { uid, path, name, title, type }) {
    const opts = await options(storagePath);
    const record = await fetchRecord(opts, uid);
    const data = new Uint8Array(fs.readFileSync(path));
    return ksm.uploadFile(opts, record, { name, title, type, data });
  },

  /**
   * Changes fields, title or notes of a record and saves it. `revision` replaces the revision the
   * device read (to save from a stale copy); `transaction` opens a general or rotation one.
   */
  async update(storagePath, { uid, fields, title, notes, revision, transaction, linksToRemove }) {
    const opts = await options(storagePath);
    const record = await fetchRecord(opts, uid);
    setFields(record.data, fields);
    if (title !== undefined) record.data.title = title;
    if (notes !== undefined) record.data.notes = notes;
    if (revision !== undefined) record.revision = revision;
    await ksm.updateSecret2(opts, record, {
      transactionType: transaction,
      links2Remove: linksToRemove,
    });
    return null;
  },

  async complete(storagePath, { uid, rollback }) {
    await ksm.completeTransaction(await options(storagePath), uid, rollback);
    return null;
  },

  async create(storagePath, { folderUid, subFolderUid, data }) {
    return ksm.createSecret2(await options(storagePath), { folderUid, subFolderUid }, data);
  },

  async delete(storagePath, { uids }) {
    return ksm.deleteSecret(await options(storagePath), uids);
  },

  async create_folder(storagePath, { folderUid, subFolderUid, name }) {
    return ksm.createFolder(await options(storagePath), { folderUid, subFolderUid }, name);
  },

  async update_folder(storagePath, { uid, name }) {
    const opts = await options(storagePath);
    // updateFolder encrypts with the folder's own key from the SDK's process-wide key cache,
    // which only getFolders fills with sub-folder keys (PROTOCOL.md §5.8): a fresh process
    // lists the folders first, as any JS program renaming a sub-folder must.
    await ksm.getFolders(opts);
    await ksm.updateFolder(opts, uid, name);
    return null;
  },

  async delete_folder(storagePath, { uids, force }) {
    return ksm.deleteFolder(await options(storagePath), uids, force);
  },
};

async function main() {
  const [storagePath, operation, argsJson] = process.argv.slice(2);
  const run = operations[operation];
  if (!storagePath || !run) {
    throw new Error(`usage: ksm.cjs STORAGE_FILE (${Object.keys(operations).join("|")}) ARGS_JSON`);
  }
  const result = await run(storagePath, JSON.parse(argsJson ?? "{}"));
  process.stdout.write(`${JSON.stringify({ ok: result ?? null })}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err) })}\n`);
  process.exitCode = 1;
});
