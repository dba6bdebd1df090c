//! Temporary edits of a web server's configuration files, undone byte for byte.
//!
//! Before any file of the user's is written, its original and edited bytes are recorded in
//! `journal.json` in our own directory (written atomically, fsynced). Restoring writes the
//! original bytes back into the same file (same inode, owner, mode, ACLs and SELinux label:
//! an in-place write, not a rename) and deletes the journal last. A run killed between the
//! two (SIGKILL, power loss) leaves the journal behind, and the next run restores from it
//! before doing anything else. A file that changed since we edited it (the user edited it
//! meanwhile) is not overwritten: the message says which line to remove.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::SolverError;

const JOURNAL: &str = "journal.json";

/// One edited file of the user's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    /// base64 of the bytes before our edit.
    original: String,
    /// base64 of the bytes we wrote.
    modified: String,
    /// The lines we inserted, for the message when the file changed under us.
    inserted: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    files: Vec<Entry>,
    /// Files of our own (challenge responses, included snippets) to delete.
    own: Vec<PathBuf>,
}

/// The edits of one challenge round, in `dir` (ours, under the work dir).
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    rec: Record,
}

/// What recovering or restoring did.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Some user file was written back (the server needs a reload).
    pub changed: bool,
    /// Files left alone because they changed since our edit, with what to do.
    pub problems: Vec<String>,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> SolverError {
    move |source| SolverError::Io { context, source }
}

impl Journal {
    pub(crate) fn new(dir: &Path) -> Self {
        Journal {
            dir: dir.to_path_buf(),
            rec: Record::default(),
        }
    }

    /// Write a file of our own (removed on restore); readable by the server's workers.
    pub(crate) fn write_own(&mut self, path: &Path, data: &[u8]) -> Result<(), SolverError> {
        self.rec.own.push(path.to_path_buf());
        self.save()?;
        if let Some(parent) = path.parent() {
            create_dir_755(parent)?;
        }
        std::fs::write(path, data).map_err(io(format!("writing {}", path.display())))?;
        set_mode(path, 0o644);
        Ok(())
    }

    /// Insert `(offset, text)` pairs into the user's file `path` (offsets into its current
    /// bytes). Recorded first, then written in place.
    pub(crate) fn edit(&mut self, path: &Path, inserts: &[(usize, String)]) -> Result<(), SolverError> {
        let original = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
        let mut sorted = inserts.to_vec();
        sorted.sort_by_key(|(o, _)| *o);
        let mut modified = Vec::with_capacity(original.len() + 256);
        let mut at = 0;
        for (offset, text) in &sorted {
            modified.extend_from_slice(&original[at..*offset]);
            modified.extend_from_slice(text.as_bytes());
            at = *offset;
        }
        modified.extend_from_slice(&original[at..]);
        self.rec.files.push(Entry {
            path: path.to_path_buf(),
            original: B64.encode(&original),
            modified: B64.encode(&modified),
            inserted: sorted.iter().map(|(_, t)| t.trim().to_string()).collect(),
        });
        self.save()?;
        write_in_place(path, &modified)
    }

    fn save(&self) -> Result<(), SolverError> {
        create_dir_755(&self.dir)?;
        let path = self.dir.join(JOURNAL);
        let tmp = self.dir.join(format!(".{JOURNAL}.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&self.rec).expect("plain data");
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))
    }

    /// Undo everything: user files back to their original bytes, our files deleted, the
    /// journal last.
    pub(crate) fn restore(self) -> Restored {
        let out = undo(&self.rec);
        let _ = std::fs::remove_file(self.dir.join(JOURNAL));
        out
    }

    /// Undo what a killed run left in `dir`, if anything.
    pub(crate) fn recover(dir: &Path) -> Result<Option<Restored>, SolverError> {
        let path = dir.join(JOURNAL);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let rec: Record = serde_json::from_slice(&text).map_err(|e| {
            SolverError::Setup(format!(
                "{} is unreadable ({e}); restore the files it names by hand, then delete it",
                path.display()
            ))
        })?;
        tracing::warn!(
            "an earlier run was interrupted while its challenge configuration was in place; undoing it ({})",
            path.display()
        );
        let out = undo(&rec);
        let _ = std::fs::remove_file(&path);
        Ok(Some(out))
    }
}

fn undo(rec: &Record) -> Restored {
    let mut out = Restored::default();
    // Latest edit first, in case one file was edited twice.
    for e in rec.files.iter().rev() {
        let (Ok(original), Ok(modified)) = (B64.decode(&e.original), B64.decode(&e.modified)) else {
            out.problems
                .push(format!("{}: the journal entry is damaged", e.path.display()));
            continue;
        };
        match std::fs::read(&e.path) {
            Ok(now) if now == original => {}
            Ok(now) if now == modified => match write_in_place(&e.path, &original) {
                Ok(()) => out.changed = true,
                Err(err) => out.problems.push(err.to_string()),
            },
            Ok(_) => out.problems.push(format!(
                "{} changed while certfleet's temporary lines were in it; it was left as it is: remove the line(s) {} by hand",
                e.path.display(),
                e.inserted.join(" / ")
            )),
            Err(err) => out.problems.push(format!("{}: {err}", e.path.display())),
        }
    }
    for f in &rec.own {
        let _ = std::fs::remove_file(f);
    }
    out
}

/// Overwrite the file's bytes without replacing the file.
fn write_in_place(path: &Path, data: &[u8]) -> Result<(), SolverError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io(format!("writing {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("writing {}", path.display())))
}

pub(crate) fn create_dir_755(dir: &Path) -> Result<(), SolverError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    set_mode(dir, 0o755);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_restore_and_recover_keep_bytes_and_inode() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("site.conf");
        let text = "server {\n  listen 80;\n}\n";
        std::fs::write(&user, text).unwrap();
        let ino = std::fs::metadata(&user).unwrap().ino();
        let own = d.path().join("own");

        let mut j = Journal::new(&own);
        j.write_own(&own.join("x.conf"), b"location = /x { return 200; }")
            .unwrap();
        j.edit(&user, &[(8, "\ninclude X;\n".into())]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&user).unwrap(),
            "server {\ninclude X;\n\n  listen 80;\n}\n"
        );
        let r = j.restore();
        assert!(r.changed && r.problems.is_empty());
        assert_eq!(std::fs::read_to_string(&user).unwrap(), text);
        assert_eq!(std::fs::metadata(&user).unwrap().ino(), ino);
        assert!(!own.join("x.conf").exists() && !own.join(JOURNAL).exists());

        // A run killed with its edit in place: the next run's recover undoes it.
        let mut j = Journal::new(&own);
        j.edit(&user, &[(8, "\ninclude X;\n".into())]).unwrap();
        std::mem::forget(j);
        let r = Journal::recover(&own).unwrap().unwrap();
        assert!(r.changed);
        assert_eq!(std::fs::read_to_string(&user).unwrap(), text);
        assert!(Journal::recover(&own).unwrap().is_none());

        // Changed meanwhile by someone else: left alone, with what to remove.
        let mut j = Journal::new(&own);
        j.edit(&user, &[(8, "\ninclude X;\n".into())]).unwrap();
        std::fs::write(&user, "server {\ninclude X;\n  listen 81;\n}\n").unwrap();
        let r = j.restore();
        assert!(!r.changed);
        assert!(r.problems[0].contains("include X;"), "{:?}", r.problems);
    }
}
