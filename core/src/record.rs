//! Recording and replaying a core's inputs.
//!
//! A host that records writes one [`Step`] per input it gave the core (the time, the input as
//! data, and what the core answered and emitted, rendered as text), after a header holding the
//! [`Config`]. [`Replay`] feeds the same inputs to a fresh core and checks that every step gives
//! the same outputs: production traffic becomes a test. Outputs are compared as their `Debug`
//! text, which names every field, so a difference anywhere shows.

use serde::{Deserialize, Serialize};

use crate::command::{Command, Reply};
use crate::engine::{Config, Core};
use crate::error::Error;
use crate::event::Event;
use crate::ids::MessageId;
use crate::room::StoredRoom;
use crate::time::Timestamp;

/// One input to a core, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// [`Core::restore_room`], at start.
    RestoreRoom(StoredRoom),
    /// [`Core::restore_message_ids`], at start.
    RestoreMessageIds(MessageId),
    /// [`Core::handle`].
    Command(Command),
    /// [`Core::handle_timeout`].
    Timeout,
}

/// What a recording starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The core's configuration.
    pub config: Config,
}

/// One recorded step: an input at a time, and what the core answered and emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The time the host passed in.
    pub now: Timestamp,
    /// The input.
    pub input: Input,
    /// The answer (for a command) and then every event drained, as [`outputs`] writes them.
    pub outputs: Vec<String>,
}

/// The text an answer is recorded as.
fn render_reply(reply: &Result<Reply, Error>) -> String {
    format!("{reply:?}")
}

/// The text an event is recorded as.
fn render_event(event: &Event) -> String {
    format!("{event:?}")
}

/// A step's outputs as recorded: its answer (for a command), then every event it caused.
pub fn outputs(reply: Option<&Result<Reply, Error>>, events: &[Event]) -> Vec<String> {
    reply
        .map(render_reply)
        .into_iter()
        .chain(events.iter().map(render_event))
        .collect()
}

/// Runs `input` on `core` at `now` and drains its events: the step's outputs, rendered.
pub fn run(core: &mut Core, now: Timestamp, input: Input) -> Vec<String> {
    let reply = match input {
        Input::RestoreRoom(room) => {
            core.restore_room(now, room);
            None
        }
        Input::RestoreMessageIds(next) => {
            core.restore_message_ids(next);
            None
        }
        Input::Command(command) => Some(core.handle(now, command)),
        Input::Timeout => {
            core.handle_timeout(now);
            None
        }
    };
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    outputs(reply.as_ref(), &events)
}

/// Where a replay first differed from its recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({input:?}) gave {got:?}, the recording has {recorded:?}")]
pub struct Divergence {
    /// The step's index, from 0.
    pub step: usize,
    /// Its input.
    pub input: Input,
    /// What the replay gave.
    pub got: Vec<String>,
    /// What was recorded.
    pub recorded: Vec<String>,
}

/// A fresh core fed a recording's steps one at a time.
#[derive(Debug)]
pub struct Replay {
    core: Core,
    steps: usize,
}

impl Replay {
    /// A core configured as the recording's header says.
    pub fn new(header: Header) -> Self {
        Replay {
            core: Core::new(header.config),
            steps: 0,
        }
    }

    /// Runs the next step and checks its outputs against the recorded ones.
    pub fn step(&mut self, step: Step) -> Result<(), Box<Divergence>> {
        let got = run(&mut self.core, step.now, step.input.clone());
        let at = self.steps;
        self.steps += 1;
        if got == step.outputs {
            Ok(())
        } else {
            Err(Box::new(Divergence {
                step: at,
                input: step.input,
                got,
                recorded: step.outputs,
            }))
        }
    }

    /// How many steps have replayed.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The core as the replay left it.
    pub fn core(&self) -> &Core {
        &self.core
    }
}
