//! What the room page shows, made from core's answers: messages grouped by sender and day, the
//! rooms in the sidebar, direct messages by the other person's name. Times here are UTC and say
//! so; the page's script redraws them in the reader's own zone.

use roomcast_core::{Kind, Message, PresenceEntry, RoomSummary, Seq};

use roomcast_hub::files::INLINE_TYPES;

use crate::wire::{MessageBody, rfc3339};

/// Consecutive messages by one person within this long share one header.
const GROUP_WITHIN_MILLIS: u64 = 5 * 60 * 1000;

/// A message as the page shows it.
pub struct MessageRow {
    pub seq: u64,
    /// The poster's name, shown.
    pub user: String,
    /// The poster's id, which tells people apart.
    pub user_id: String,
    pub text: String,
    /// RFC 3339, UTC: the `<time datetime>`, and what the script reads.
    pub sent_at: String,
    /// `14:03 UTC`.
    pub time: String,
    /// `Thursday 26 November 2026, 14:03:05 UTC`: shown on hover.
    pub full: String,
    /// A day separator goes before this message: the day, in words.
    pub day: Option<String>,
    /// Same sender as the message before, shortly after: no repeated name and time.
    pub continued: bool,
    /// Its text was edited.
    pub edited: bool,
    /// It was deleted: its text is gone.
    pub deleted: bool,
    /// The message it answers: its number, and who wrote what, if shown on this page.
    pub reply: Option<Reply>,
    /// Its reactions: `👍 2`, in order.
    pub reactions: Vec<(String, usize)>,
    /// Its reactions as the script reads them (JSON: emoji and who).
    pub reactions_json: String,
    /// The files it carries.
    pub files: Vec<FileRow>,
    /// The same as the script reads them (JSON, as the API says them).
    pub files_json: String,
}

/// A file a message carries, as the page shows it.
pub struct FileRow {
    pub url: String,
    pub name: String,
    /// An image the page shows as a thumbnail (else a link to download).
    pub image: bool,
    /// `12.5 KB`.
    pub size: String,
}

/// `812 B`, `12.5 KB`, `3.1 MB`.
pub fn size_words(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} B"),
        1000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// A quoted message a reply answers.
pub struct Reply {
    pub seq: u64,
    /// `ada: the first words…`, or `a deleted message`; `None` if not on this page.
    pub quote: Option<String>,
}

/// How much of a quoted message a reply shows.
const QUOTE_CHARS: usize = 80;

/// Rows for the messages among `entries` (oldest first; edits, deletions and reactions are
/// already folded into the messages they change): a day separator where the UTC day changes,
/// and a sender's run of messages grouped.
pub fn message_rows(entries: &[std::sync::Arc<Message>]) -> Vec<MessageRow> {
    let mut rows: Vec<MessageRow> = Vec::with_capacity(entries.len());
    let mut previous: Option<(&str, u64)> = None;
    let messages = entries
        .iter()
        .filter(|m| matches!(m.kind, Kind::Post { .. }));
    for m in messages {
        let millis = m.sent_at.as_unix_millis();
        let day = millis / 86_400_000;
        let new_day = previous.is_none_or(|(_, at)| at / 86_400_000 != day);
        let continued = !new_day
            && previous.is_some_and(|(user, at)| {
                user == m.user.as_str() && millis.saturating_sub(at) < GROUP_WITHIN_MILLIS
            });
        let sent_at = rfc3339(m.sent_at);
        let clock = &sent_at[11..19];
        let files = MessageBody::from(m.as_ref()).attachments;
        rows.push(MessageRow {
            seq: m.seq.0,
            user: m.user.name().to_owned(),
            user_id: m.user.to_string(),
            text: m.text.clone(),
            time: format!("{} UTC", &clock[..5]),
            full: format!("{}, {clock} UTC", day_words(day)),
            day: new_day.then(|| day_words(day)),
            continued,
            sent_at,
            edited: m.state.edited_at.is_some(),
            deleted: m.state.deleted,
            reply: reply_to(m).map(|seq| Reply {
                seq: seq.0,
                quote: entries.iter().find(|e| e.seq == seq).map(|e| quote(e)),
            }),
            reactions: m
                .state
                .reactions
                .iter()
                .map(|r| (r.emoji.to_string(), r.users.len()))
                .collect(),
            reactions_json: serde_json::to_string(&m.state.reactions).unwrap_or_default(),
            files: files
                .iter()
                .map(|f| FileRow {
                    url: f.url.clone(),
                    name: f.name.clone(),
                    image: INLINE_TYPES.contains(&f.content_type.as_str()),
                    size: size_words(f.size),
                })
                .collect(),
            files_json: serde_json::to_string(&files).unwrap_or_default(),
        });
        previous = Some((m.user.as_str(), millis));
    }
    rows
}

fn reply_to(m: &Message) -> Option<Seq> {
    match m.kind {
        Kind::Post { reply_to, .. } => reply_to,
        Kind::Edit { .. } | Kind::Delete { .. } | Kind::React { .. } | Kind::Moderate { .. } => {
            None
        }
    }
}

/// `ada: the first words…` of a quoted message.
fn quote(m: &Message) -> String {
    if m.state.deleted {
        return "a deleted message".to_owned();
    }
    let mut words: String = m.text.chars().take(QUOTE_CHARS).collect();
    if m.text.chars().count() > QUOTE_CHARS {
        words.push('…');
    }
    format!("{}: {words}", m.user.name())
}

/// `Thursday 26 November 2026` for a day counted from 1970-01-01.
fn day_words(day: u64) -> String {
    const WEEKDAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (year, month, date) = civil(day);
    // `day % 7` is below 7 and `month` within 1..=12: both index their tables.
    let weekday = WEEKDAYS[(day % 7) as usize];
    format!("{weekday} {date} {} {year}", MONTHS[month as usize - 1])
}

/// Year, month and day of the month for a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(day: u64) -> (u64, u64, u64) {
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let date = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, date)
}

/// A room in the sidebar.
pub struct SideRoom {
    pub id: String,
    /// `#lobby`, or for a direct-message room the other person's name.
    pub label: String,
    pub private: bool,
    /// The page being shown.
    pub current: bool,
    /// Messages the visitor has not read (0 for the page being shown, which marks them read).
    pub unread: u64,
}

/// The sidebar: rooms, then direct messages, each as the visitor would name them.
pub fn sidebar(rooms: &[RoomSummary], me: &str, current: &str) -> (Vec<SideRoom>, Vec<SideRoom>) {
    let (mut channels, mut directs) = (Vec::new(), Vec::new());
    for room in rooms {
        let side = SideRoom {
            id: room.id.to_string(),
            label: title(room, me),
            private: room.private,
            current: room.id.as_str() == current,
            unread: if room.id.as_str() == current {
                0
            } else {
                room.unread.unwrap_or(0)
            },
        };
        if room.direct_with(me).is_some() {
            directs.push(side);
        } else {
            channels.push(side);
        }
    }
    directs.sort_by(|a, b| a.label.cmp(&b.label));
    (channels, directs)
}

/// What a room is called on the page: `#id`, or for a direct-message room the other person.
pub fn title(room: &RoomSummary, me: &str) -> String {
    match room.direct_with(me) {
        Some(other) => other.name().to_owned(),
        None => format!("#{}", room.id),
    }
}

/// A member of a private room, as its owner sees them.
pub struct MemberRow {
    /// Their name, shown.
    pub user: String,
    /// Their id, which the remove form names.
    pub user_id: String,
    /// Listening now.
    pub here: bool,
    /// May be removed (everyone but the owner).
    pub removable: bool,
}

/// The members list for those who manage it.
pub fn members(room: &RoomSummary, present: &[PresenceEntry]) -> Vec<MemberRow> {
    room.members
        .iter()
        .map(|m| MemberRow {
            user: m.name().to_owned(),
            user_id: m.to_string(),
            here: present.iter().any(|p| p.user == *m),
            removable: room.owner.as_ref() != Some(m),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_named_in_words() {
        assert_eq!(day_words(0), "Thursday 1 January 1970");
        // 2026-11-26.
        assert_eq!(day_words(20_783), "Thursday 26 November 2026");
        // 2024-02-29, a leap day.
        assert_eq!(day_words(19_782), "Thursday 29 February 2024");
    }
}
