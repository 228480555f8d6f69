//! bpffs pins (`<pin_root>/<iface>/<MAP>`) and the per-interface lock that
//! keeps a second instance off an interface already monitored.
//!
//! The lock is an `flock` on `/run/smtp-monitor/<iface>.lock`: the kernel
//! releases it when the process dies, so pins left by a crashed instance are
//! recognised as stale and replaced.

use std::{
    fs::{self, File},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use super::DatapathError;

/// Default bpffs directory of all smtp-monitor pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/smtp-monitor";
/// Directory of the lock files.
pub const LOCK_DIR: &str = "/run/smtp-monitor";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Pin directory of the monitor of `iface`.
pub fn pin_dir(pin_root: &Path, iface: &str) -> PathBuf {
    pin_root.join(iface)
}

/// Exclusive lock on an interface; released on drop (and by the kernel on exit).
pub struct IfaceLock {
    _file: File,
    path: PathBuf,
}

impl IfaceLock {
    pub fn acquire(iface: &str) -> Result<IfaceLock, DatapathError> {
        fs::create_dir_all(LOCK_DIR).map_err(|e| DatapathError::io(LOCK_DIR, e))?;
        let path = Path::new(LOCK_DIR).join(format!("{iface}.lock"));
        let file =
            File::create(&path).map_err(|e| DatapathError::io(path.display().to_string(), e))?;
        // SAFETY: valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(DatapathError::AlreadyRunning {
                iface: iface.to_string(),
                lock: path,
            });
        }
        Ok(IfaceLock { _file: file, path })
    }
}

impl Drop for IfaceLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A pin directory that is removed (with its pins) on drop.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Creates `<pin_root>/<iface>`, mounting bpffs on `/sys/fs/bpf` if needed
    /// and removing stale pins of a dead instance (the caller holds the lock).
    pub fn create(pin_root: &Path, iface: &str) -> Result<PinDir, DatapathError> {
        ensure_bpffs(pin_root)?;
        let path = pin_dir(pin_root, iface);
        if path.exists() {
            tracing::warn!(dir = %path.display(), "removing stale pins of a previous instance");
            let _ = fs::remove_dir_all(&path);
        }
        fs::create_dir_all(&path).map_err(|source| DatapathError::BpfFs {
            path: path.clone(),
            source,
        })?;
        Ok(PinDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove pins");
        }
        // Remove the root too when we were the last user (fails otherwise).
        if let Some(root) = self.path.parent() {
            let _ = fs::remove_dir(root);
        }
    }
}

/// Mounts bpffs on /sys/fs/bpf when `pin_root` lies under it and nothing is
/// mounted there yet.
fn ensure_bpffs(pin_root: &Path) -> Result<(), DatapathError> {
    let base = Path::new("/sys/fs/bpf");
    if !pin_root.starts_with(base) || is_bpffs(base) {
        return Ok(());
    }
    tracing::info!("mounting bpffs on /sys/fs/bpf");
    let src = c"bpf";
    let target = c"/sys/fs/bpf";
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(DatapathError::BpfFs {
            path: base.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is valid; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}
