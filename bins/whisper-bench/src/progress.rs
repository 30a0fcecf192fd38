//! Human progress on stderr: a bar while a long setup step runs (drawn only
//! on a terminal), and one line when it ends (always), so logs of
//! unattended runs still say what happened. Stdout is kept for the report.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One setup step's progress.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar counting up to `len`.
    pub fn bar(what: &str, len: usize) -> Progress {
        let bar = ProgressBar::new(len as u64);
        let style =
            ProgressStyle::with_template("{msg:20} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    /// One more done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Sets how many are done.
    pub fn set(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    /// Removes the bar and prints `summary` as a line.
    pub fn finish(&self, summary: &str) {
        self.bar.finish_and_clear();
        note(summary);
    }
}

/// A line of progress on stderr.
pub fn note(line: &str) {
    eprintln!("whisper-bench: {line}");
}
