//! Stamp files: a record that a model file was hashed and found right, so later runs skip
//! re-hashing ~850 MB. A stamp `.<name>.verified` beside the model holds the sha256, size and
//! mtime seen at verification; it counts only while the file's size and mtime are unchanged
//! and the digest is still the expected one.

use crate::error::{FetchError, IoContext};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub sha256: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
}

/// Size and mtime of a file as the stamp records them.
pub fn file_identity(path: &Path) -> Result<(u64, u128), FetchError> {
    let meta = std::fs::metadata(path).ctx(|| format!("reading {}", path.display()))?;
    let mtime = meta
        .modified()
        .ctx(|| format!("mtime of {}", path.display()))?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((meta.len(), mtime))
}

/// Where the stamp of model `name` lives in `dir`.
pub fn stamp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.verified"))
}

impl Stamp {
    pub fn render(&self) -> String {
        format!("sha256 {}\nsize {}\nmtime_ns {}\n", self.sha256, self.size, self.mtime_ns)
    }

    /// Parses [`Stamp::render`]'s output; `None` for anything else.
    pub fn parse(text: &str) -> Option<Stamp> {
        let (mut sha256, mut size, mut mtime_ns) = (None, None, None);
        for line in text.lines() {
            match line.split_once(' ')? {
                ("sha256", v) => sha256 = Some(v.trim().to_string()),
                ("size", v) => size = Some(v.trim().parse().ok()?),
                ("mtime_ns", v) => mtime_ns = Some(v.trim().parse().ok()?),
                _ => return None,
            }
        }
        Some(Stamp { sha256: sha256?, size: size?, mtime_ns: mtime_ns? })
    }

    /// Reads a stamp; a missing or unreadable one is `None` (the file just gets re-hashed).
    pub fn read(path: &Path) -> Option<Stamp> {
        Stamp::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Writes the stamp atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> Result<(), FetchError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, self.render()).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).ctx(|| format!("writing {}", path.display()))
    }

    /// Does this stamp vouch for a file that now has `size`/`mtime_ns` and should hash to
    /// `expected_sha256`?
    pub fn vouches_for(&self, expected_sha256: &str, size: u64, mtime_ns: u128) -> bool {
        self.sha256.eq_ignore_ascii_case(expected_sha256) && self.size == size && self.mtime_ns == mtime_ns
    }
}

/// True when `stamp_file` vouches for `file` (which must exist) hashing to `expected_sha256`.
pub fn is_fresh(stamp_file: &Path, file: &Path, expected_sha256: &str) -> bool {
    let (Some(stamp), Ok((size, mtime))) = (Stamp::read(stamp_file), file_identity(file)) else {
        return false;
    };
    stamp.vouches_for(expected_sha256, size, mtime)
}

/// Records that `file` was just verified to hash to `sha256`.
pub fn record(stamp_file: &Path, file: &Path, sha256: &str) -> Result<(), FetchError> {
    let (size, mtime_ns) = file_identity(file)?;
    Stamp { sha256: sha256.to_string(), size, mtime_ns }.write(stamp_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    const SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

    fn stamp() -> Stamp {
        Stamp { sha256: SHA.into(), size: 98_362_432, mtime_ns: 1_732_525_320_123_456_789 }
    }

    #[test]
    fn render_parse_roundtrip() {
        assert_eq!(Stamp::parse(&stamp().render()), Some(stamp()));
    }

    #[test]
    fn garbage_is_no_stamp() {
        for text in ["", "sha256 abc\n", "sha256 abc\nsize x\nmtime_ns 1\n", "hello world\n", "x"] {
            assert_eq!(Stamp::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn vouches_only_for_unchanged_files_with_the_expected_digest() {
        let s = stamp();
        assert!(s.vouches_for(SHA, s.size, s.mtime_ns));
        assert!(s.vouches_for(&SHA.to_uppercase(), s.size, s.mtime_ns));
        assert!(!s.vouches_for(SHA, s.size + 1, s.mtime_ns), "size changed");
        assert!(!s.vouches_for(SHA, s.size, s.mtime_ns + 1), "mtime changed");
        let other = "0".repeat(64);
        assert!(!s.vouches_for(&other, s.size, s.mtime_ns), "table digest changed");
    }

    #[test]
    fn record_then_fresh_until_the_file_changes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = TempDir::new("stamp")?;
        let file = dir.path().join("m.gguf");
        let st = stamp_path(dir.path(), "m.gguf");
        assert_eq!(st.file_name().and_then(|n| n.to_str()), Some(".m.gguf.verified"));
        std::fs::write(&file, b"weights")?;
        assert!(!is_fresh(&st, &file, SHA), "no stamp yet");
        record(&st, &file, SHA)?;
        assert!(is_fresh(&st, &file, SHA));
        assert!(!is_fresh(&st, &file, &"1".repeat(64)));
        std::fs::write(&file, b"weights, longer")?;
        assert!(!is_fresh(&st, &file, SHA), "size changed");
        std::fs::remove_file(&file)?;
        assert!(!is_fresh(&st, &file, SHA), "file gone");
        Ok(())
    }
}
