//! The EVE file of `run --output`, reopened on request for logrotate: after
//! a rename and SIGHUP (`ExecReload`), the next write or flush opens a new
//! file at the same path (appending), so nothing is written to the renamed
//! file after the reopen and nothing is lost in between (what was buffered
//! goes to whichever file is open when it is written).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An append-only output file that can be reopened at its path.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    file: File,
    /// Set by [`Reopen::request`]; cleared when the file was reopened (or
    /// the attempt failed: the old file stays in use, logged).
    reopen: Arc<AtomicBool>,
}

/// Asks an [`OutputFile`] (owned by another thread) to reopen.
#[derive(Debug, Clone)]
pub struct Reopen(Arc<AtomicBool>);

impl Reopen {
    /// The next write or flush reopens the file.
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }
}

fn open(path: &Path) -> io::Result<File> {
    File::options().create(true).append(true).open(path)
}

impl OutputFile {
    /// Opens `path` for appending (created when missing).
    pub fn open(path: &Path) -> io::Result<(OutputFile, Reopen)> {
        let reopen = Arc::new(AtomicBool::new(false));
        let file = OutputFile {
            path: path.to_path_buf(),
            file: open(path)?,
            reopen: reopen.clone(),
        };
        Ok((file, Reopen(reopen)))
    }

    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        match open(&self.path) {
            Ok(f) => {
                // What the old file has is on disk before the switch.
                let _ = self.file.flush();
                self.file = f;
                tracing::info!(path = %self.path.display(), "output reopened");
            }
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot reopen the output; still writing to the old file"
            ),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reopen_if_asked();
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.reopen_if_asked();
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopens_at_the_path_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("output-file-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("eve.json");
        let rotated = dir.join("eve.json.1");
        let (mut f, reopen) = OutputFile::open(&path).expect("open");
        f.write_all(b"one\n").expect("write");
        std::fs::rename(&path, &rotated).expect("rename");
        f.write_all(b"two\n").expect("write");
        reopen.request();
        f.flush().expect("flush");
        f.write_all(b"three\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&rotated).expect("old"),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "three\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
