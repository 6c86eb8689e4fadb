//! [`Recorder`]: writes the core's inputs and outputs as JSON lines (`--record-inputs`), for
//! [`roomcast_core::record::Replay`].
//!
//! The first line is the [`Header`] (the core's configuration), then one [`Step`] per input.
//! The file holds every message text and user name that passed through: keep it as private as
//! the data dir. A write that fails turns recording off with an error in the log; serving goes
//! on.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use roomcast_core::record::{self, Header, Input, Step};
use roomcast_core::{Config, Core, Error, Event, Reply, Timestamp};

/// The open recording.
pub(crate) struct Recorder {
    out: Option<BufWriter<File>>,
}

impl Recorder {
    /// Creates (or truncates) the file and writes the header.
    pub(crate) fn create(path: &Path, config: &Config) -> std::io::Result<Recorder> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut recorder = Recorder {
            out: Some(BufWriter::new(options.open(path)?)),
        };
        recorder.line(&Header {
            config: config.clone(),
        });
        Ok(recorder)
    }

    /// Runs a start-up input on `core` and records it.
    pub(crate) fn run(&mut self, core: &mut Core, now: Timestamp, input: Input) {
        let outputs = record::run(core, now, input.clone());
        self.line(&Step {
            now,
            input,
            outputs,
        });
    }

    /// Records a step the hub ran.
    pub(crate) fn write(
        &mut self,
        now: Timestamp,
        input: Input,
        reply: Option<&Result<Reply, Error>>,
        events: &[Event],
    ) {
        self.line(&Step {
            now,
            input,
            outputs: record::outputs(reply, events),
        });
    }

    /// Writes out what is buffered.
    pub(crate) fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(e) = out.flush()
        {
            tracing::error!(error = %e, "recording inputs failed; recording stops");
            self.out = None;
        }
    }

    fn line(&mut self, value: &impl serde::Serialize) {
        let Some(out) = &mut self.out else { return };
        let written = serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::error!(error = %e, "recording inputs failed; recording stops");
            self.out = None;
        }
    }
}
