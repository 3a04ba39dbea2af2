//! A progress bar over denoising steps on stderr, drawn like the model download bar: redrawn in
//! place on a terminal, a line per step elsewhere (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Width of the bar in characters (as the download bar's).
const BAR_WIDTH: usize = 30;

/// Reports `(done, total)` steps on stderr.
pub struct StepBar {
    terminal: bool,
    started: Instant,
}

impl Default for StepBar {
    /// A bar on stderr, starting its clock now.
    fn default() -> Self {
        StepBar { terminal: std::io::stderr().is_terminal(), started: Instant::now() }
    }
}

impl StepBar {
    /// Step `done` of `total` is finished.
    pub fn step(&mut self, done: usize, total: usize) {
        let per_step = self.started.elapsed().as_secs_f64() / done.max(1) as f64;
        let text = bar_text(done, total, per_step);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let end = if done >= total { "\n" } else { "" };
            let _ = write!(err, "\rferrite: {text}\x1b[K{end}");
        } else {
            let _ = writeln!(err, "ferrite: {text}");
        }
        let _ = err.flush();
    }
}

/// `denoising [###############...............] 2/4 steps  1.25 s/step`
pub fn bar_text(done: usize, total: usize, seconds_per_step: f64) -> String {
    let fraction = if total == 0 { 0.0 } else { (done as f64 / total as f64).min(1.0) };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let bar = "#".repeat(filled) + &".".repeat(BAR_WIDTH - filled);
    format!("denoising [{bar}] {done}/{total} steps  {seconds_per_step:.2} s/step")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_steps_done() {
        assert_eq!(bar_text(2, 4, 1.25), "denoising [###############...............] 2/4 steps  1.25 s/step");
        assert_eq!(bar_text(4, 4, 0.5), format!("denoising [{}] 4/4 steps  0.50 s/step", "#".repeat(30)));
        assert!(bar_text(0, 0, 0.0).starts_with(&format!("denoising [{}] 0/0", ".".repeat(30))));
    }
}
