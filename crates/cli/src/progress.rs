//! Progress: a spinner per step on a terminal, plain lines otherwise, nothing with --quiet.
//! The engine's step events land here.

use std::io::IsTerminal;
use std::time::Duration;

use certfleet_engine::{Event, EventSink};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            return Self {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(80));
            Self {
                bar: Some(bar),
                plain: false,
            }
        } else {
            Self {
                bar: None,
                plain: true,
            }
        }
    }

    /// A step of the CLI's own (the engine's come as events, logged by the engine).
    pub fn step(&self, msg: &str) {
        self.show(msg);
        tracing::debug!("{msg}");
    }

    fn show(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        } else if self.plain {
            eprintln!("certfleet: {msg}");
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl EventSink for Progress {
    fn event(&self, e: &Event<'_>) {
        if let Event::Step(msg) = e {
            self.show(msg);
        }
    }
}
