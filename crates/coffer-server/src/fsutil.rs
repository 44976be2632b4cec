//! Small file-system helpers: private files and durable writes. Shared with the `coffer`
//! binary (server keys, owner sessions, profiles), so there is one way to write a secret file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically (temporary file, fsync, rename, directory fsync) with
/// mode 0600. Missing parent directories are created with mode 0700; existing ones are left as
/// they are (they may be shared, like `/tmp` or `/etc/coffer`). A symbolic link at `path` is
/// followed (its target is replaced, the link stays), and a replaced file keeps its owner and
/// group where the caller may set them (root rotating the key of a server that runs as
/// another user).
pub fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_private(path, data, false)
}

/// [`write_private_file`] for a file that must not exist yet: fails with
/// [`std::io::ErrorKind::AlreadyExists`], changing nothing, when it does — even if it appears
/// while this runs.
pub fn write_new_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_private(path, data, true)
}

fn write_private(path: &Path, data: &[u8], must_be_new: bool) -> std::io::Result<()> {
    let path = &resolve_links(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        coffer_crypto::encode_url(&coffer_crypto::random_bytes::<6>())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        if must_be_new {
            // A hard link never replaces an existing name.
            return std::fs::hard_link(&tmp, path);
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
        }
        std::fs::rename(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

/// Follows a chain of symbolic links (at most 40, as the kernel does) to the path they name,
/// which need not exist yet.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!(
        "{} is a chain of too many symbolic links",
        path.display()
    )))
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_leave_existing_directories_alone() {
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_private_file(&shared.join("key.json"), b"one").unwrap();
        assert_eq!(
            mode(&shared),
            0o1777,
            "an existing directory keeps its mode"
        );
        assert_eq!(mode(&shared.join("key.json")), 0o600);
        // Missing directories are made private.
        let nested = shared.join("a").join("b").join("key.json");
        write_private_file(&nested, b"two").unwrap();
        assert_eq!(mode(&shared.join("a")), 0o700);
        assert_eq!(mode(&shared.join("a").join("b")), 0o700);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&shared)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn private_files_follow_links_and_new_ones_never_replace() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real.json");
        let link = root.path().join("link.json");
        write_private_file(&real, b"first").unwrap();
        // A relative link, resolved against the link's directory.
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_private_file(&link, b"second").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"second");
        // A dangling link gets its target created.
        let dangling = root.path().join("dangling.json");
        std::os::unix::fs::symlink(root.path().join("made.json"), &dangling).unwrap();
        write_private_file(&dangling, b"made").unwrap();
        assert_eq!(
            std::fs::read(root.path().join("made.json")).unwrap(),
            b"made"
        );

        let err = write_new_private_file(&real, b"third").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&real).unwrap(), b"second");
        let fresh = root.path().join("fresh.json");
        write_new_private_file(&fresh, b"new").unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"new");
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 5);
    }
}
