//! Progress bars on stderr for long scenario stages, shown only when the CLI turns them on (it does when
//! stderr is a terminal); tests and library users see nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Whether stages draw progress bars.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns progress bars on or off for every later stage.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// One stage's progress bar (nothing when progress is off).
pub struct Stage(Option<ProgressBar>);

impl Stage {
    /// Starts a stage of `total` steps.
    pub fn new(name: &str, total: usize) -> Self {
        if !ENABLED.load(Ordering::Relaxed) {
            return Stage(None);
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_owned());
        Stage(Some(bar))
    }

    /// One step done.
    pub fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
