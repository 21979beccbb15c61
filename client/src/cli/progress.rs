//! Progress bars for long transfers, drawn on stderr only when a person is
//! watching it.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::objects::Progress;

const WITH_TOTAL: &str = "{spinner} [{elapsed_precise}] [{wide_bar}] \
     {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";
const WITHOUT_TOTAL: &str = "{spinner} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec}";

/// Whether a bar should be drawn: stderr is a terminal, and the data itself
/// is not being written to that same terminal through stdout.
pub(crate) fn wanted(data_to_stdout: bool) -> bool {
    std::io::stderr().is_terminal() && !(data_to_stdout && std::io::stdout().is_terminal())
}

/// The progress display of one transfer; draws nothing when disabled.
pub(crate) struct TransferBar {
    bar: Option<ProgressBar>,
}

impl TransferBar {
    /// A bar over `total` bytes, or a running count when the total is unknown.
    pub fn new(enabled: bool, total: Option<u64>) -> TransferBar {
        if !enabled {
            return TransferBar { bar: None };
        }
        let template = if total.is_some() {
            WITH_TOTAL
        } else {
            WITHOUT_TOTAL
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        TransferBar { bar: Some(bar) }
    }

    /// The callback that moves the bar, for the client library.
    pub fn callback(&self) -> Option<Progress> {
        let bar = self.bar.clone()?;
        Some(Arc::new(move |bytes| bar.set_position(bytes)))
    }

    /// The callback that notes a resumption above the bar (or on stderr
    /// when no bar is drawn) and moves the bar back to where it resumes.
    pub fn on_resume(&self) -> crate::objects::OnResume {
        let bar = self.bar.clone();
        Arc::new(move |from, why| {
            let note = format!("resuming from byte {from}: {why}");
            match &bar {
                Some(bar) => {
                    bar.println(note);
                    bar.set_position(from);
                }
                None => eprintln!("{note}"),
            }
        })
    }

    /// Clears the bar after success; leaves it showing how far a failed
    /// transfer got.
    pub fn finish<T, E>(&self, result: &Result<T, E>) {
        if let Some(bar) = &self.bar {
            if result.is_ok() {
                bar.finish_and_clear();
            } else {
                bar.abandon();
                // The abandoned bar leaves the cursor at its end; the error
                // message that follows belongs on a line of its own.
                eprintln!();
            }
        }
    }
}
