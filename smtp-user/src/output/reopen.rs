//! The EVE file of `--output`, reopenable for logrotate: `ctl reopen` opens
//! the path again — after logrotate renamed the old file, a new one — and
//! the writer switches to it before the next line it writes (or at its next
//! flush), never inside a line: no line is split between the two files.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn open(path: &Path) -> io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// The writer side (on the pipeline worker).
pub struct ReopenFile {
    file: File,
    next: Arc<Mutex<Option<File>>>,
    /// The last byte written ended a line (or nothing was written yet).
    line_start: bool,
}

/// The daemon's side: opens the path again on request.
#[derive(Clone)]
pub struct Reopener {
    path: PathBuf,
    next: Arc<Mutex<Option<File>>>,
}

impl ReopenFile {
    /// Opens `path` for appending (created if needed).
    pub fn open(path: &Path) -> io::Result<(ReopenFile, Reopener)> {
        let next = Arc::new(Mutex::new(None));
        Ok((
            ReopenFile {
                file: open(path)?,
                next: next.clone(),
                line_start: true,
            },
            Reopener {
                path: path.to_path_buf(),
                next,
            },
        ))
    }
}

impl Reopener {
    /// Opens the path again; the writer uses the new file from its next
    /// flush. An error leaves the writer on the old file.
    pub fn reopen(&self) -> io::Result<()> {
        let f = open(&self.path)?;
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ReopenFile {
    /// Takes the reopened file, if any, between two lines.
    fn switch(&mut self) {
        if !self.line_start {
            return;
        }
        // Never wait on the daemon here.
        if let Ok(mut next) = self.next.try_lock() {
            if let Some(f) = next.take() {
                self.file = f;
            }
        }
    }
}

impl Write for ReopenFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.switch();
        let n = self.file.write(buf)?;
        if let Some(last) = buf.get(..n).and_then(<[u8]>::last) {
            self.line_start = *last == b'\n';
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.switch();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_to_the_new_file_between_lines() {
        let dir = std::env::temp_dir().join(format!("reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("eve.json");
        let (mut w, r) = ReopenFile::open(&p).unwrap();
        w.write_all(b"one\ntw").unwrap();
        std::fs::rename(&p, dir.join("eve.json.1")).unwrap();
        r.reopen().unwrap();
        // The line being written ends in the old file, even across a flush.
        w.flush().unwrap();
        w.write_all(b"o\n").unwrap();
        w.write_all(b"three\n").unwrap();
        w.flush().unwrap();
        let old = std::fs::read_to_string(dir.join("eve.json.1")).unwrap();
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
