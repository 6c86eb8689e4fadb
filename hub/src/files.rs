//! Attachments' bytes (see `roomcast_core::Attachment`): what a client uploads to a room, kept
//! on disk by content, served back to those who may read the room, and let go when the message
//! or the room that carried it is deleted. Core decides who may upload and post; this only
//! keeps files.
//!
//! The directory (`--files-dir`; by default `files` in the data dir, and a directory every node
//! shares with `--redis`):
//!
//! - `blobs/<sha256>`: one file per distinct content;
//! - `rooms/<room>/<id>`: a hard link to its blob per upload, which is what is served, so an
//!   upload keeps its bytes however its blob's name comes and goes;
//! - `rooms/<room>/<id>.json`: what the upload is ([`Stored`]);
//! - `rooms/<room>/<id>.pending`: there until a posted message carries the upload; an upload
//!   pending for longer than [`Quotas::pending_for`] is removed;
//! - `tmp/`: uploads being written.
//!
//! A blob whose link count falls to one (its own name) is referenced by nothing and removed.
//!
//! What one may keep is bounded ([`Quotas`]): each uploader's bytes, pending and posted (a guest
//! gets core's guest share), the bytes of every upload together, and a floor of free space on
//! the disk below which nothing more is taken. Usage is counted at open from the `.json` files
//! and kept as uploads come and go; an upload reserves what it may still take while it is
//! written, so uploads at once cannot pass a bound together.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use roomcast_core::{Attachment, AttachmentError, RoomId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the files may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes one uploader keeps, pending and posted (a guest gets `guest_share` percent).
    pub per_user: u64,
    /// Bytes every upload takes together.
    pub total: u64,
    /// Free bytes the disk keeps: below them, no upload is taken.
    pub min_free: u64,
    /// How long an upload may wait for a message to carry it.
    pub pending_for: Duration,
    /// The guest share of `per_user`, in percent.
    pub guest_share: u8,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            per_user: 1 << 30,
            total: 10 << 30,
            min_free: 1 << 30,
            pending_for: Duration::from_secs(600),
            guest_share: 25,
        }
    }
}

impl Quotas {
    /// What `user` may keep.
    fn of(&self, user: &UserId) -> u64 {
        match user.is_guest() {
            true => (self.per_user / 100 * u64::from(self.guest_share)).max(1),
            false => self.per_user,
        }
    }
}

/// Bytes kept, per uploader and in all (reservations of uploads being written included).
#[derive(Debug, Default)]
struct Usage {
    by_user: HashMap<UserId, u64>,
    total: u64,
}

impl Usage {
    fn add(&mut self, user: &UserId, bytes: u64) {
        *self.by_user.entry(user.clone()).or_default() += bytes;
        self.total += bytes;
    }

    fn remove(&mut self, user: &UserId, bytes: u64) {
        if let Some(used) = self.by_user.get_mut(user) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                self.by_user.remove(user);
            }
        }
        self.total = self.total.saturating_sub(bytes);
    }
}

/// How long a file name may be, in bytes (longer ones are cut at a character boundary).
pub const MAX_NAME_BYTES: usize = 200;

/// How much of the start of a file is looked at to tell its type.
const SNIFF_BYTES: usize = 8192;

/// The media types shown in the page as they are (images a browser draws and never runs);
/// every other file is served as `application/octet-stream`, to download.
pub const INLINE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What an upload is, kept beside its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// What a message carrying it says of it.
    pub attachment: Attachment,
    /// Who uploaded it: only they may post it.
    pub uploader: UserId,
    /// Its content's SHA-256, in hex (its blob's name, and its `ETag`).
    pub sha256: String,
    /// When it was uploaded (an upload from before its room was last created is not the
    /// room's).
    pub uploaded_at: Timestamp,
}

impl Stored {
    /// Whether the page may show it as it is (see [`INLINE_TYPES`]).
    pub fn inline(&self) -> bool {
        INLINE_TYPES.contains(&self.attachment.content_type.as_str())
    }
}

/// Why an upload was not kept.
#[derive(Debug)]
pub enum SaveError {
    /// Core's rules refuse it (too large, empty).
    Refused(AttachmentError),
    /// The client's bytes stopped coming (a timeout, a broken connection).
    Body(io::Error),
    /// The disk failed.
    Storage(io::Error),
}

/// The attachments directory.
#[derive(Debug)]
pub struct Files {
    dir: PathBuf,
    quotas: Quotas,
    usage: Mutex<Usage>,
}

impl Files {
    /// Opens (creating if missing) the attachments directory `dir`, counting what it keeps.
    pub fn open(dir: &Path, quotas: Quotas) -> io::Result<Files> {
        for sub in ["blobs", "rooms", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let files = Files {
            dir: dir.to_owned(),
            quotas,
            usage: Mutex::new(Usage::default()),
        };
        *files.usage() = files.count();
        Ok(files)
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What every upload kept takes, by uploader, read from their `.json` files.
    fn count(&self) -> Usage {
        let mut usage = Usage::default();
        for room in fs::read_dir(self.dir.join("rooms")).into_iter().flatten() {
            let Ok(room) = room else { continue };
            for id in ids_in(&room.path(), "json") {
                if let Some(stored) = read_stored(&room.path().join(format!("{id}.json"))) {
                    usage.add(&stored.uploader, stored.attachment.size);
                }
            }
        }
        usage
    }

    /// Bytes kept now: `(by this user, in all)`.
    pub fn used(&self, user: &UserId) -> (u64, u64) {
        let usage = self.usage();
        (usage.by_user.get(user).copied().unwrap_or(0), usage.total)
    }

    /// Reserves what `user` may still upload (at most `max`), with the refusal an upload over
    /// it gets (the bound that set it), or says which bound is reached already.
    fn reserve(&self, user: &UserId, max: u64) -> Result<(u64, AttachmentError), AttachmentError> {
        if let Some(free) = free_bytes(&self.dir)
            && free < self.quotas.min_free.saturating_add(max.min(1 << 20))
        {
            metrics::counter!("roomcast_uploads_refused_total", "reason" => "disk-full")
                .increment(1);
            return Err(AttachmentError::DiskFull {
                floor: self.quotas.min_free,
            });
        }
        let mut usage = self.usage();
        let quota = self.quotas.of(user);
        let mine = usage.by_user.get(user).copied().unwrap_or(0);
        if mine >= quota {
            metrics::counter!("roomcast_uploads_refused_total", "reason" => "files-quota")
                .increment(1);
            return Err(AttachmentError::Quota { max: quota });
        }
        if usage.total >= self.quotas.total {
            metrics::counter!("roomcast_uploads_refused_total", "reason" => "files-full")
                .increment(1);
            return Err(AttachmentError::FilesFull {
                max: self.quotas.total,
            });
        }
        let (mine_left, all_left) = (quota - mine, self.quotas.total - usage.total);
        let (room, over) = if max <= mine_left && max <= all_left {
            (max, AttachmentError::TooLarge { max })
        } else if mine_left <= all_left {
            (mine_left, AttachmentError::Quota { max: quota })
        } else {
            (
                all_left,
                AttachmentError::FilesFull {
                    max: self.quotas.total,
                },
            )
        };
        usage.add(user, room);
        Ok((room, over))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `body` as an upload of `user` to `room`, named `name`, reading no more than
    /// `max` bytes, nor more than the user's quota, the files' total or the disk's floor allow
    /// (one over is refused, and what was written removed). Never holds more than a buffer of
    /// it in memory.
    pub async fn save(
        &self,
        room: &RoomId,
        user: &UserId,
        name: &str,
        body: impl AsyncRead + Unpin,
        max: u64,
        now: Timestamp,
    ) -> Result<Stored, SaveError> {
        let (allowed, over) = self.reserve(user, max).map_err(SaveError::Refused)?;
        let saved = self.write(room, user, name, body, allowed, now).await;
        let kept = saved.as_ref().map_or(0, |s| s.attachment.size);
        self.usage().remove(user, allowed - kept);
        saved.map_err(|e| match e {
            SaveError::Refused(AttachmentError::TooLarge { .. }) => SaveError::Refused(over),
            e @ (SaveError::Refused(_) | SaveError::Body(_) | SaveError::Storage(_)) => e,
        })
    }

    async fn write(
        &self,
        room: &RoomId,
        user: &UserId,
        name: &str,
        mut body: impl AsyncRead + Unpin,
        max: u64,
        now: Timestamp,
    ) -> Result<Stored, SaveError> {
        let id = new_id().map_err(SaveError::Storage)?;
        let tmp = self.dir.join("tmp").join(&id);
        let created = tmp.clone();
        let file = blocking::unblock(move || fs::File::create_new(created))
            .await
            .map_err(SaveError::Storage)?;
        let mut out = blocking::Unblock::with_capacity(64 * 1024, file);
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size = 0u64;
        let mut buf = vec![0; 64 * 1024];
        let copied = loop {
            let n = match body.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(SaveError::Body(e)),
            };
            size += n as u64;
            if size > max {
                break Err(SaveError::Refused(AttachmentError::TooLarge { max }));
            }
            let chunk = &buf[..n];
            let sniffed = SNIFF_BYTES.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&chunk[..sniffed]);
            hasher.update(chunk);
            if let Err(e) = out.write_all(chunk).await {
                break Err(SaveError::Storage(e));
            }
        };
        let copied = match (copied, out.flush().await) {
            (Ok(()), Ok(())) if size == 0 => Err(SaveError::Refused(AttachmentError::Empty)),
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(e)) => Err(SaveError::Storage(e)),
            (Err(e), _) => Err(e),
        };
        let file = out.into_inner().await;
        if let Err(e) = copied {
            let _ = blocking::unblock(move || fs::remove_file(tmp)).await;
            return Err(e);
        }
        let stored = Stored {
            attachment: Attachment {
                id,
                name: clean_name(name),
                content_type: sniff(&head).to_owned(),
                size,
            },
            uploader: user.clone(),
            sha256: hex(&hasher.finalize()),
            uploaded_at: now,
        };
        let dir = self.dir.clone();
        let room = room.clone();
        let placed = stored.clone();
        blocking::unblock(move || {
            file.sync_all()?;
            place(&dir, &tmp, &room, &placed).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        })
        .await
        .map_err(SaveError::Storage)?;
        Ok(stored)
    }

    /// The upload `id` of `room`, if there is one.
    pub async fn find(&self, room: &RoomId, id: &str) -> io::Result<Option<Stored>> {
        if !Attachment::is_id(id) {
            return Ok(None);
        }
        let path = self.upload(room, id).with_extension("json");
        blocking::unblock(move || match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Where the upload's bytes are (see [`Files::find`] first).
    pub fn path(&self, room: &RoomId, id: &str) -> PathBuf {
        self.upload(room, id)
    }

    /// A message now carries these uploads: they are no longer pending.
    pub async fn posted(&self, room: &RoomId, ids: Vec<String>) {
        let paths: Vec<PathBuf> = ids
            .iter()
            .filter(|id| Attachment::is_id(id))
            .map(|id| self.upload(room, id).with_extension("pending"))
            .collect();
        blocking::unblock(move || {
            for path in paths {
                let _ = fs::remove_file(path);
            }
        })
        .await;
    }

    /// Lets go of uploads of `room` (a deleted message carried them): their files, and each
    /// blob nothing else links to. Blocking: call it off the async threads.
    pub fn drop_uploads(&self, room: &RoomId, ids: &[String]) {
        for id in ids.iter().filter(|id| Attachment::is_id(id)) {
            match drop_upload(&self.dir, room, id) {
                Ok(Some(stored)) => self
                    .usage()
                    .remove(&stored.uploader, stored.attachment.size),
                Ok(None) => {}
                Err(e) => tracing::warn!(%room, id, error = %e, "could not remove an attachment"),
            }
        }
    }

    /// Lets go of every upload of a deleted room. Blocking, as [`Files::drop_uploads`].
    pub fn drop_room(&self, room: &RoomId) {
        let room_dir = self.dir.join("rooms").join(room.as_str());
        self.drop_uploads(room, &ids_in(&room_dir, "json"));
        let _ = fs::remove_dir_all(room_dir);
    }

    /// Removes uploads pending for longer than [`Quotas::pending_for`] that `posted` says no
    /// stored message names (never posted), and uploads being written that a crash left
    /// behind. Returns how many uploads it removed.
    pub fn sweep(&self, posted: impl Fn(&RoomId, &str) -> bool) -> usize {
        let old = |path: &Path, age: Duration| {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|a| a > age)
        };
        let mut removed = 0;
        for entry in fs::read_dir(self.dir.join("tmp")).into_iter().flatten() {
            let Ok(entry) = entry else { continue };
            if old(&entry.path(), Duration::from_secs(3600)) {
                let _ = fs::remove_file(entry.path());
            }
        }
        for room in fs::read_dir(self.dir.join("rooms")).into_iter().flatten() {
            let Ok(room) = room else { continue };
            let Some(id) = room
                .file_name()
                .to_str()
                .and_then(|r| RoomId::parse(r, usize::MAX).ok())
            else {
                continue;
            };
            for upload in ids_in(&room.path(), "pending") {
                let marker = room.path().join(format!("{upload}.pending"));
                if !old(&marker, self.quotas.pending_for) {
                    continue;
                }
                // A stored message names it: posted, though its marker outlived the post.
                if posted(&id, &upload) {
                    let _ = fs::remove_file(&marker);
                    continue;
                }
                if let Ok(dropped) = drop_upload(&self.dir, &id, &upload) {
                    removed += 1;
                    if let Some(stored) = dropped {
                        self.usage()
                            .remove(&stored.uploader, stored.attachment.size);
                    }
                }
            }
        }
        removed
    }

    /// How often [`Files::sweep`] is to run: a tenth of the pending time, between a second and
    /// a minute.
    pub fn sweep_every(&self) -> Duration {
        (self.quotas.pending_for / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    fn upload(&self, room: &RoomId, id: &str) -> PathBuf {
        self.dir.join("rooms").join(room.as_str()).join(id)
    }
}

/// Puts a written upload in place: linked to its blob (the same content kept once), with
/// what it is, pending until posted.
fn place(dir: &Path, tmp: &Path, room: &RoomId, stored: &Stored) -> io::Result<()> {
    let blob = dir.join("blobs").join(&stored.sha256);
    let room_dir = dir.join("rooms").join(room.as_str());
    fs::create_dir_all(&room_dir)?;
    let upload = room_dir.join(&stored.attachment.id);
    let meta = serde_json::to_vec(stored).map_err(io::Error::other)?;
    let meta_tmp = tmp.with_extension("json");
    fs::write(&meta_tmp, meta)?;
    fs::File::create(upload.with_extension("pending"))?;
    fs::rename(&meta_tmp, upload.with_extension("json"))?;
    match fs::hard_link(&blob, &upload) {
        // The same content is kept already: this upload is one more link to it.
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::rename(tmp, &upload)?;
            match fs::hard_link(&upload, &blob) {
                Ok(()) => Ok(()),
                // Another upload of the same content got there first: both stay whole.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// What an upload's `.json` says it is, if it can be read.
fn read_stored(path: &Path) -> Option<Stored> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes one upload, and its blob if nothing else links to it: what it was, if known.
fn drop_upload(dir: &Path, room: &RoomId, id: &str) -> io::Result<Option<Stored>> {
    let upload = dir.join("rooms").join(room.as_str()).join(id);
    let stored = read_stored(&upload.with_extension("json"));
    let sha = stored.as_ref().map(|s| s.sha256.clone());
    for path in [
        upload.with_extension("pending"),
        upload.with_extension("json"),
        upload,
    ] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(sha) = sha.filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
        let blob = dir.join("blobs").join(sha);
        if links(&blob)? == Some(1) {
            // A new upload of the same content linking to it now keeps its own link.
            match fs::remove_file(&blob) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(stored)
}

/// The bytes free on the disk holding `dir` for an unprivileged writer, if it can be asked.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// How many names a file has (`None` if it is gone).
fn links(path: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.nlink())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The upload ids in a room's directory that have a file ending in `.<extension>`.
fn ids_in(room_dir: &Path, extension: &str) -> Vec<String> {
    fs::read_dir(room_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let (id, ext) = name.split_once('.')?;
            (ext == extension && Attachment::is_id(id)).then(|| id.to_owned())
        })
        .collect()
}

/// The media type of a file, from its first bytes: what the bytes are, never what the
/// uploader said.
pub fn sniff(head: &[u8]) -> &'static str {
    match infer::get(head) {
        Some(kind) => kind.mime_type(),
        None => "application/octet-stream",
    }
}

/// A file name as it is kept: its last path component, without control characters or quotes,
/// at most [`MAX_NAME_BYTES`] long; `file` if nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean = String::new();
    for ch in last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\u{202e}'))
    {
        if clean.len() + ch.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        clean.push(ch);
    }
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".to_owned()
    } else {
        clean.to_owned()
    }
}

/// A new upload id: 128 random bits in hex.
fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("r", 64).unwrap()
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name, 32).unwrap()
    }

    fn save(files: &Files, bytes: &[u8], max: u64) -> Result<Stored, SaveError> {
        let now = Timestamp::from_unix_millis(1);
        smol::block_on(files.save(&room(), &user("ada"), "../a\u{7}.png", bytes, max, now))
    }

    #[test]
    fn the_same_content_is_kept_once_and_goes_with_its_last_upload() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::open(dir.path(), Quotas::default()).unwrap();
        let png = b"\x89PNG\r\n\x1a\n and then some";
        let a = save(&files, png, 1024).unwrap();
        let b = save(&files, png, 1024).unwrap();
        assert_ne!(a.attachment.id, b.attachment.id);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.attachment.name, "a.png");
        assert_eq!(a.attachment.content_type, "image/png");
        assert!(a.inline());
        let blob = dir.path().join("blobs").join(&a.sha256);
        assert_eq!(links(&blob).unwrap(), Some(3), "one blob, two uploads");
        let found = smol::block_on(files.find(&room(), &a.attachment.id)).unwrap();
        assert_eq!(found, Some(a.clone()));

        files.drop_uploads(&room(), std::slice::from_ref(&a.attachment.id));
        assert_eq!(links(&blob).unwrap(), Some(2));
        assert_eq!(
            smol::block_on(files.find(&room(), &a.attachment.id)).unwrap(),
            None
        );
        files.drop_room(&room());
        assert_eq!(links(&blob).unwrap(), None, "nothing references it");
        assert!(!dir.path().join("rooms/r").exists());
    }

    #[test]
    fn empty_and_oversized_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::open(dir.path(), Quotas::default()).unwrap();
        assert!(matches!(
            save(&files, b"", 10),
            Err(SaveError::Refused(AttachmentError::Empty))
        ));
        assert!(matches!(
            save(&files, &[7; 11], 10),
            Err(SaveError::Refused(AttachmentError::TooLarge { max: 10 }))
        ));
        for sub in ["tmp", "blobs", "rooms"] {
            let left = fs::read_dir(dir.path().join(sub)).unwrap().count();
            assert_eq!(left, 0, "{sub} is empty");
        }
    }

    #[test]
    fn types_come_from_the_bytes_and_names_lose_their_paths() {
        assert_eq!(
            sniff(b"<!DOCTYPE html><script>alert(1)</script>"),
            "text/html"
        );
        assert_eq!(
            sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "application/octet-stream"
        );
        assert_eq!(sniff(b"GIF89a"), "image/gif");
        assert_eq!(clean_name("C:\\Users\\x\\evil\".txt"), "evil.txt");
        assert_eq!(clean_name(".."), "file");
        assert_eq!(clean_name(&"é".repeat(300)).len(), MAX_NAME_BYTES);
    }
}
