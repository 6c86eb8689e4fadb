//! A terminal chat driven by the core in-process: the closest thing to a server until the hosts
//! land. Each line is a command or a message; everything the core emits is printed.
//!
//! ```text
//! cargo run -p roomcast-core --example console
//! /as ada          speak as ada
//! /join lobby      create the room if needed and listen (resuming where you left it)
//! hello 👋         post to the current room
//! /history         the newest messages
//! /who             who is here
//! /rooms           all rooms
//! /leave           close your listener
//! /delete          delete the current room
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::time::SystemTime;

use roomcast_core::{
    CloseListener, Config, Core, Cursor, DeleteRoom, Event, History, ListRooms, ListenerId,
    OpenListener, Resume, Seq, Submit, Timestamp, ViewRoom,
};

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn main() -> io::Result<()> {
    let mut core = Core::new(Config::default());
    let mut user = "guest".to_owned();
    // Each user's current room.
    let mut rooms: HashMap<String, String> = HashMap::new();
    // Per user and room: the open listener and the last sequence number seen, for resume.
    let mut listening: HashMap<(String, String), (Option<ListenerId>, Seq)> = HashMap::new();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "roomcast console: /as NAME, /join ROOM, then type. /help for more."
    )?;
    for line in io::stdin().lock().lines() {
        let line = line?;
        let (word, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let result = match (word, rooms.get(&user).cloned()) {
            ("/help", _) => {
                writeln!(
                    out,
                    "/as NAME  /join ROOM  /leave  /history  /who  /rooms  /delete  or any text to post"
                )?;
                Ok(())
            }
            ("/as", _) => {
                user = arg.to_owned();
                Ok(())
            }
            ("/join", _) => {
                let key = (user.clone(), arg.to_owned());
                let after = listening.get(&key).map_or(Seq::ZERO, |(_, seen)| *seen);
                let open = OpenListener {
                    user: user.clone(),
                    room: arg.to_owned(),
                    resume: Resume::After(after),
                    create_if_missing: true,
                    replacing: None,
                };
                core.ask(now(), open).map(|opened| {
                    if let Some(gap) = opened.gap {
                        let _ = writeln!(
                            out,
                            "  (messages {}..{} are no longer held)",
                            gap.after.next(),
                            gap.first_held
                        );
                    }
                    for m in &opened.backlog {
                        let _ = writeln!(out, "  #{} {}: {}", m.seq, m.user, m.text);
                    }
                    listening.insert(key, (Some(opened.listener), opened.latest));
                    rooms.insert(user.clone(), arg.to_owned());
                })
            }
            ("/leave", Some(r)) => {
                if let Some((listener, _)) = listening.get_mut(&(user.clone(), r))
                    && let Some(id) = listener.take()
                {
                    let _ = core.ask(now(), CloseListener { listener: id });
                }
                rooms.remove(&user);
                Ok(())
            }
            ("/history", Some(room)) => {
                let history = History {
                    user: user.clone(),
                    room,
                    cursor: Cursor::Newest,
                    limit: None,
                };
                core.ask(now(), history).map(|page| {
                    for m in page.messages {
                        let _ = writeln!(out, "  #{} {}: {}", m.seq, m.user, m.text);
                    }
                })
            }
            ("/who", Some(room)) => {
                let view = ViewRoom {
                    user: user.clone(),
                    room,
                };
                core.ask(now(), view).map(|view| {
                    for p in view.presence {
                        let _ = writeln!(out, "  {} ({} open)", p.user, p.listeners);
                    }
                })
            }
            ("/rooms", _) => {
                let list = ListRooms {
                    user: user.clone(),
                    after: None,
                    limit: None,
                };
                core.ask(now(), list).map(|page| {
                    for r in page.rooms {
                        let _ =
                            writeln!(out, "  {} (latest #{}, {} here)", r.id, r.latest, r.users);
                    }
                })
            }
            ("/delete", Some(room)) => core.ask(
                now(),
                DeleteRoom {
                    user: user.clone(),
                    room,
                },
            ),
            (_, Some(r)) if !word.starts_with('/') => {
                let submit = Submit {
                    user: user.clone(),
                    room: r,
                    text: line.clone(),
                    idempotency_key: None,
                    create_if_missing: false,
                    kind: Default::default(),
                    recalled: None,
                };
                core.ask(now(), submit).map(drop)
            }
            _ => {
                writeln!(out, "  join a room first, or /help")?;
                Ok(())
            }
        };
        if let Err(e) = result {
            writeln!(out, "  refused ({}): {e}", e.code())?;
        }
        core.handle_timeout(now());
        while let Some(event) = core.poll_event() {
            match &event {
                Event::Published(m) => {
                    for ((_, r), (listener, seen)) in listening.iter_mut() {
                        if listener.is_some() && r.as_str() == m.room.as_str() {
                            *seen = m.seq;
                        }
                    }
                    writeln!(out, "  #{} [{}] {}: {}", m.seq, m.room, m.user, m.text)?
                }
                Event::Joined { room, user } => writeln!(out, "  * {user} joined {room}")?,
                Event::Left { room, user } => writeln!(out, "  * {user} left {room}")?,
                Event::Typing { room, user } => writeln!(out, "  * {user} is typing in {room}")?,
                Event::RoomClosed {
                    room: closed,
                    reason,
                } => {
                    listening.retain(|(_, r), _| r.as_str() != closed.as_str());
                    rooms.retain(|_, r| r.as_str() != closed.as_str());
                    writeln!(out, "  * {closed} closed: {reason:?}")?
                }
                Event::RoomCreated { room, .. } => writeln!(out, "  * {room} created")?,
                Event::ListenerClosed {
                    listener, reason, ..
                } => {
                    for (open, _) in listening.values_mut() {
                        if *open == Some(*listener) {
                            *open = None;
                        }
                    }
                    writeln!(out, "  * your listener closed: {}", reason.code())?
                }
                Event::MemberAdded { room, user } => {
                    writeln!(out, "  * {user} may now enter {room}")?
                }
                Event::MemberRemoved { room, user } => {
                    writeln!(out, "  * {user} left {room}'s members")?
                }
                Event::Gap { room, gap } => {
                    writeln!(out, "  * {room}: messages after {} are lost", gap.after)?
                }
                // This console numbers its own messages: no shared log to read.
                Event::Fetch { .. }
                | Event::Read { .. }
                | Event::ReadForgotten { .. }
                | Event::AttachmentsDropped { .. }
                | Event::Here { .. }
                | Event::Unloaded { .. }
                | Event::Diverged { .. } => {}
            }
        }
    }
    Ok(())
}
