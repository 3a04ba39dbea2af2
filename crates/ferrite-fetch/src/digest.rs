//! Streaming sha256, and copying while hashing.

use crate::error::{FetchError, IoContext};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

const BUF: usize = 1 << 20;

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// sha256 (lowercase hex) and length of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<(String, u64), FetchError> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Copies all of `src` into `dst`, feeding the same bytes to `hasher`; returns the byte count.
pub fn copy_hashing(src: &mut impl Read, dst: &mut impl Write, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    // sha256("abc"), FIPS 180-2 appendix B.1
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_small_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = TempDir::new("digest")?;
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc")?;
        assert_eq!(sha256_file(&p)?, (ABC.to_string(), 3));
        let e = dir.path().join("empty");
        std::fs::write(&e, b"")?;
        assert_eq!(sha256_file(&e)?, (EMPTY.to_string(), 0));
        Ok(())
    }

    #[test]
    fn hashes_across_buffer_boundaries() -> Result<(), Box<dyn std::error::Error>> {
        let dir = TempDir::new("digest")?;
        let p = dir.path().join("big");
        let data: Vec<u8> = (0..(BUF * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data)?;
        let (digest, len) = sha256_file(&p)?;
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest, hex(&Sha256::digest(&data)));
        Ok(())
    }

    #[test]
    fn copy_hashing_concatenates_and_hashes() -> std::io::Result<()> {
        let mut hasher = Sha256::new();
        let mut out = Vec::new();
        copy_hashing(&mut &b"a"[..], &mut out, &mut hasher)?;
        copy_hashing(&mut &b"bc"[..], &mut out, &mut hasher)?;
        assert_eq!(out, b"abc");
        assert_eq!(hex(&hasher.finalize()), ABC);
        Ok(())
    }
}
