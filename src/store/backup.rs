//! `mfad backup --to FILE`: a consistent copy of the SQLite database in a new file,
//! given its name only once it is complete and checked, and never through a name that
//! another user could swap meanwhile.
//!
//! SQLite's `VACUUM INTO` opens its target by name. Made straight at `FILE`, the name
//! could be replaced by a symlink to someone else's file between our creating it and
//! SQLite opening it (an attack run won 4 of 120 tries by polling the directory). So the
//! copy is made in a private directory (mode 0700) of ours inside FILE's directory,
//! where nobody else can add, rename or remove a name; checked; and then hard-linked as
//! FILE, which fails rather than replaces when FILE exists (a symlink included). A
//! directory other users can write is refused unless it is sticky and ours: there, they
//! could rename our private directory away and put one of theirs in its place.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{SqliteDb, SCHEMA_VERSION};

impl SqliteDb {
    /// A consistent copy of the database (`VACUUM INTO`: one read transaction, so a
    /// server writing meanwhile is neither stopped nor half-copied) as the new file
    /// `target`, mode 0600, checked (`integrity_check`, the schema version) before it
    /// gets its name. An existing file is never overwritten. The copy's size in bytes.
    pub fn backup_to(&self, target: &Path) -> Result<u64, String> {
        let shown = target.display();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if target.file_name().is_none() {
            return Err(format!("{shown}: name a file to write the backup to"));
        }
        safe_directory(dir)?;
        if fs::symlink_metadata(target).is_ok() {
            return Err(exists(target));
        }
        let private = PrivateDir::new(dir)?;
        let copy = private.0.join("mfad.db");
        let name = copy
            .to_str()
            .ok_or_else(|| format!("{shown}: the path must be UTF-8"))?;
        let made = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)
            .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
        drop(made);
        let failed = |e: String| format!("the backup to {shown} failed ({e}); nothing was kept");
        self.with_conn(|c| c.execute("VACUUM INTO ?1", [name]).map(drop))
            .map_err(|e| failed(e.to_string()))?;
        check_copy(&copy).map_err(failed)?;
        fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(|e| failed(e.to_string()))?;
        fs::hard_link(&copy, target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => exists(target),
            _ => failed(e.to_string()),
        })?;
        // The new name is durable only once the directory is.
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
        fs::symlink_metadata(target)
            .map(|m| m.len())
            .map_err(|e| format!("cannot read {shown}: {e}"))
    }
}

fn exists(target: &Path) -> String {
    format!(
        "{} exists: a backup never overwrites a file; name a new one",
        target.display()
    )
}

/// Refuses a directory that users other than this one can write, unless it is sticky
/// (they cannot rename or remove what is ours) and ours.
fn safe_directory(dir: &Path) -> Result<(), String> {
    let m =
        fs::metadata(dir).map_err(|e| format!("cannot use directory {}: {e}", dir.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match writable_by_others(m.mode(), m.uid(), me) {
        false => Ok(()),
        true => Err(format!(
            "{}: other users can write in this directory, so they could swap the backup for \
             a file of theirs while it is made; write it to a directory only you can write \
             (chmod go-w), or to a sticky one you own",
            dir.display()
        )),
    }
}

/// Whether a directory of `mode` and owner `owner` lets users other than `me` change its
/// names: group or world writable, and not sticky-and-owned-by-`me`.
fn writable_by_others(mode: u32, owner: u32, me: u32) -> bool {
    let others_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    others_write && !(sticky && owner == me)
}

/// A directory of ours (mode 0700) for the copy being made; removed with what is left
/// in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new(dir: &Path) -> Result<PrivateDir, String> {
        let mut last = None;
        // A name someone made first is only a name taken: try another.
        for _ in 0..8 {
            let tag = crate::crypto::random::<8>().map_err(|e| e.to_string())?;
            let path = dir.join(format!(
                ".mfad-backup-{}",
                data_encoding::HEXLOWER.encode(&tag)
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(format!(
                        "cannot create a directory in {}: {e}",
                        dir.display()
                    ))
                }
            }
        }
        Err(format!(
            "cannot create a directory in {}: {}",
            dir.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens a backup read-only and checks it: every page and index, and today's schema.
fn check_copy(path: &Path) -> Result<(), String> {
    let copy = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let verdict: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let version: i64 = copy
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    match (verdict.as_str(), version) {
        ("ok", SCHEMA_VERSION) => Ok(()),
        ("ok", v) => Err(format!("the copy has schema version {v}")),
        (v, _) => Err(format!("the copy failed its integrity check: {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn db(dir: &Path) -> SqliteDb {
        let db = SqliteDb::open(&dir.join("t.db"), crate::durability::Durability::Normal).unwrap();
        db.write(|tx| tx.create_account("a@b.c", None, 1)).unwrap();
        db
    }

    fn mode(dir: &Path, mode: u32) {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_directories_others_cannot_change_are_used() {
        assert!(!writable_by_others(0o755, 5, 5));
        assert!(!writable_by_others(0o700, 0, 5), "not ours but closed");
        assert!(writable_by_others(0o777, 5, 5), "open, not sticky");
        assert!(writable_by_others(0o775, 5, 5), "group writable");
        assert!(!writable_by_others(0o1777, 5, 5), "sticky and ours");
        assert!(writable_by_others(0o1777, 0, 5), "sticky, not ours");
    }

    #[test]
    fn a_backup_is_made_private_checked_and_leaves_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let db = db(d.path());
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        mode(&out, 0o755);
        let target = out.join("copy.db");
        let size = db.backup_to(&target).unwrap();
        let m = fs::symlink_metadata(&target).unwrap();
        assert_eq!((m.len(), m.mode() & 0o777, m.nlink()), (size, 0o600, 1));
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["copy.db"]);
        let copy = SqliteDb::open(&target, crate::durability::Durability::Normal).unwrap();
        assert!(copy
            .read(|tx| tx.account_by_email("a@b.c"))
            .unwrap()
            .is_some());
    }

    #[test]
    fn an_existing_name_is_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let db = db(d.path());
        let victim = d.path().join("victim");
        fs::write(&victim, b"theirs").unwrap();
        let link = d.path().join("link.db");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = d.path().join("dangling.db");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        for target in [&victim, &link, &dangling] {
            let e = db.backup_to(target).unwrap_err();
            assert!(e.contains("exists: a backup never overwrites"), "{e}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"theirs");
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky_and_ours() {
        let d = tempfile::tempdir().unwrap();
        let db = db(d.path());
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        mode(&open, 0o777);
        let e = db.backup_to(&open.join("copy.db")).unwrap_err();
        assert!(e.contains("other users can write in this directory"), "{e}");
        assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
        mode(&open, 0o1777);
        db.backup_to(&open.join("copy.db")).unwrap();
    }
}
