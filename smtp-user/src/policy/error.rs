//! [`RulesError`]: why a rules file was rejected, as `PATH:LINE:COLUMN: reason`.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A rules file (or a list file it names) could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {}", path.display(), line, column, reason)]
pub struct RulesError {
    /// The rules file the position refers to.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub reason: String,
}

impl RulesError {
    /// An error at byte offset `span.start` of `text`.
    pub fn at(path: &Path, text: &str, span: Range<usize>, reason: impl Into<String>) -> Self {
        let (line, column) = line_col(text, span.start);
        RulesError {
            path: path.to_path_buf(),
            line,
            column,
            reason: reason.into(),
        }
    }

    /// An error about the whole file (e.g. unreadable): position 1:1.
    pub fn file(path: &Path, reason: impl Into<String>) -> Self {
        RulesError {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            reason: reason.into(),
        }
    }
}

/// 1-based (line, column) of byte `offset` in `text`; offsets past the end
/// or inside a character are clamped.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 100), (3, 2));
        let e = RulesError::at(Path::new("r.toml"), t, 4..5, "bad");
        assert_eq!(e.to_string(), "r.toml:2:2: bad");
    }
}
