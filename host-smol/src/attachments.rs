//! Attachments over HTTP: an upload is the request's body, streamed to disk (never whole in
//! memory), and a download is served only to those who may read the room, as a download
//! unless it is an image a browser only draws, with range requests.

use roomcast_hub::files::Stored;
use serde::Deserialize;
use tide::{Request, Response, StatusCode};

use crate::api::json;
use crate::problem::{Problem, ProblemBody};
use crate::request::{State, actor, query, room_param};
use crate::wire::AttachmentBody;

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// Upload a file to attach to a message: the request's body is the file (any
/// `Content-Type`; the server tells the type from the bytes), `name` its file name. Post a
/// message naming its `id` in `attachments` within a day, or it is removed. At most
/// `--max-attachment-bytes` (10 MiB by default); it costs one of the caller's posting tokens.
#[utoipa::path(post, path = "/api/v1/rooms/{room}/attachments", tag = "messages",
    params(
        ("room" = String, Path, description = "The room id"),
        ("name" = Option<String>, Query, description = "The file's name (its last path component is kept)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Kept: name it in a post's `attachments`", body = AttachmentBody),
        (status = 400, description = "Empty, or the body stopped coming", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to post here, or muted", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Over --max-attachment-bytes", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The server keeps no files, or cannot now", body = ProblemBody, content_type = "application/problem+json"),
        (status = 507, description = "Over the caller's quota of files (`files-quota`), the server's (`files-full`), or the disk's free-space floor (`disk-full`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn upload(mut req: Request<State>) -> Result<Response, Problem> {
    let user = actor(&req)?;
    let room = room_param(&req);
    let name = query::<_, UploadQuery>(&req)?.name.unwrap_or_default();
    let size = req.len().map(|n| n as u64);
    let body = req.take_body();
    let hub = req.state().hub.clone();
    let kept = hub.upload(&user, &room, &name, size, body).await?;
    Ok(json(
        StatusCode::Created,
        &AttachmentBody::of(&room, &kept.attachment),
    ))
}

/// Download an attachment (to those who may read the room). An image the page shows (PNG,
/// JPEG, GIF, WebP, as told by its bytes) is served as itself; anything else as
/// `application/octet-stream`, to save. Either way with `Content-Disposition`,
/// `X-Content-Type-Options: nosniff` and a sandboxing `Content-Security-Policy`, so nothing
/// uploaded runs in the server's origin. Supports `Range` (one range) and `If-None-Match`.
#[utoipa::path(get, path = "/api/v1/rooms/{room}/attachments/{id}", tag = "messages",
    params(("room" = String, Path, description = "The room id"), ("id" = String, Path, description = "The attachment")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream"),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room or attachment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the file", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn download(req: Request<State>) -> Result<Response, Problem> {
    let user = actor(&req)?;
    let room = room_param(&req);
    let id = req.param("id").unwrap_or_default().to_owned();
    let (kept, path) = req.state().hub.attachment(&user, &room, &id).await?;
    let etag = format!("\"{}\"", kept.sha256);
    let size = kept.attachment.size;
    let unchanged = req.header("If-None-Match").is_some_and(|v| {
        v.as_str()
            .split(',')
            .any(|t| t.trim() == etag || t.trim() == "*")
    });
    if unchanged {
        let mut res = Response::new(StatusCode::NotModified);
        headers(&mut res, &kept, &etag);
        return Ok(res);
    }
    let unsatisfiable = || {
        let mut refused: Response = Problem::new(
            StatusCode::RequestedRangeNotSatisfiable,
            "range-not-satisfiable",
            format!("the file is {size} bytes"),
        )
        .into();
        refused.insert_header("Content-Range", format!("bytes */{size}"));
        refused
    };
    let range = match req.header("Range").map(|v| v.as_str()) {
        None => None,
        // Only empty suffixes (`bytes=-0`): nothing is asked for (RFC 9110 §14.1.1).
        Some(asked) if only_empty_suffixes(asked) => return Ok(unsatisfiable()),
        Some(asked) => match http_range_header::parse_range_header(asked) {
            // Not a range we read: the whole file, as RFC 9110 allows.
            Err(_) => None,
            Ok(parsed) => match parsed.validate(size) {
                Ok(ranges) if ranges.len() == 1 => ranges.into_iter().next(),
                // Several ranges: the whole file (no multipart answers).
                Ok(_) => None,
                Err(_) => return Ok(unsatisfiable()),
            },
        },
    };
    let (start, len) = match &range {
        Some(r) => (*r.start(), r.end() - r.start() + 1),
        None => (0, size),
    };
    let file = open_at(path, start).await.map_err(|e| {
        Problem::new(
            StatusCode::ServiceUnavailable,
            "storage-unavailable",
            format!("the file cannot be read: {e}"),
        )
    })?;
    let mut res = Response::new(StatusCode::Ok);
    if let Some(r) = range {
        res.set_status(StatusCode::PartialContent);
        res.insert_header(
            "Content-Range",
            format!("bytes {}-{}/{size}", r.start(), r.end()),
        );
    }
    let reader = futures_lite::io::AsyncReadExt::take(file, len);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    res.set_body(tide::Body::from_reader(
        futures_lite::io::BufReader::new(reader),
        Some(len),
    ));
    // After the body, whose own type these replace.
    headers(&mut res, &kept, &etag);
    Ok(res)
}

/// What every answer about a kept file carries.
fn headers(res: &mut Response, kept: &Stored, etag: &str) {
    let (content_type, disposition) = if kept.inline() {
        (kept.attachment.content_type.as_str(), "inline")
    } else {
        ("application/octet-stream", "attachment")
    };
    res.insert_header("Content-Type", content_type);
    res.insert_header(
        "Content-Disposition",
        format!(
            "{disposition}; filename=\"{}\"; filename*=UTF-8''{}",
            ascii_name(&kept.attachment.name),
            percent_encoding::utf8_percent_encode(
                &kept.attachment.name,
                percent_encoding::NON_ALPHANUMERIC
            )
        ),
    );
    res.insert_header("X-Content-Type-Options", "nosniff");
    res.insert_header("Content-Security-Policy", "default-src 'none'; sandbox");
    res.insert_header("Cross-Origin-Resource-Policy", "same-origin");
    res.insert_header("Accept-Ranges", "bytes");
    res.insert_header("ETag", etag);
    // Only the caller's browser keeps it: access is checked on every request.
    res.insert_header("Cache-Control", "private, no-cache");
}

/// The name for clients that read only `filename`: ASCII, without quotes or backslashes.
fn ascii_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file at `path`, read from `start` on, off the async threads.
async fn open_at(
    path: std::path::PathBuf,
    start: u64,
) -> std::io::Result<blocking::Unblock<std::fs::File>> {
    use std::io::{Seek, SeekFrom};
    let file = blocking::unblock(move || {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok::<_, std::io::Error>(file)
    })
    .await?;
    // A small read-ahead: the default (8 MiB) would hold most of a file per download.
    Ok(blocking::Unblock::with_capacity(64 * 1024, file))
}

/// Whether a `Range` value asks only for suffixes of no bytes (`bytes=-0`, `bytes=-0, -00`),
/// which select nothing: unsatisfiable whatever the file's size.
fn only_empty_suffixes(asked: &str) -> bool {
    let Some(specs) = asked.trim().strip_prefix("bytes=") else {
        return false;
    };
    specs.split(',').all(|spec| {
        spec.trim()
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b == b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_keep_to_ascii() {
        assert_eq!(ascii_name("a \"b\"\\c é.png"), "a _b__c _.png");
    }

    #[test]
    fn a_range_of_empty_suffixes_selects_nothing() {
        for nothing in ["bytes=-0", "bytes= -00", "bytes=-0, -0"] {
            assert!(only_empty_suffixes(nothing), "{nothing}");
        }
        for something in [
            "bytes=-1",
            "bytes=0-",
            "bytes=-0, 0-1",
            "bytes=-",
            "items=-0",
        ] {
            assert!(!only_empty_suffixes(something), "{something}");
        }
    }
}
