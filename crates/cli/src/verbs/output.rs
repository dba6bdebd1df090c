//! Printing that survives a closed pipe. `certfleet certificates | head -1` closes stdout
//! after one line; `println!` then panics (exit 134 in release builds). Like ripgrep we
//! treat a broken pipe as the reader being done: output stops quietly. The command still
//! finishes what it was doing (a deploy hook after certonly's message, a renewal) and
//! exits with its own code.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Write one line (`args` + `\n`) to stdout or stderr, unless that stream is gone.
pub fn line(stderr: bool, args: std::fmt::Arguments<'_>) {
    let gone = if stderr { &STDERR_GONE } else { &STDOUT_GONE };
    if gone.load(Ordering::Relaxed) {
        return;
    }
    let written = if stderr {
        write_line(&mut io::stderr().lock(), args)
    } else {
        write_line(&mut io::stdout().lock(), args)
    };
    // Broken pipe, or anything else (disk full behind a redirect): there is nowhere
    // better to say so, so stop writing to that stream.
    if written.is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

fn write_line(w: &mut impl Write, args: std::fmt::Arguments<'_>) -> io::Result<()> {
    w.write_fmt(args)?;
    w.write_all(b"\n")?;
    w.flush()
}
