//! The `roomcast.v1.Chat` service: each RPC is one hub call; `Stream` turns a subscription into
//! a gRPC server stream.

use std::pin::Pin;

use futures_util::{Stream, StreamExt, TryStreamExt};
use roomcast_core::{
    Attachment, ChangeMember, CreateRoom, Cursor, DeleteRoom, Emoji, Error, History, Kind,
    ListRooms, MarkRead, MemberChange, Moderation, OpenDirect, OpenListener, Resume, Seq, Submit,
    Typing, UserId, ViewRoom,
};
use roomcast_hub::edge::EdgeArgs;
use roomcast_hub::identity::{API_KEY_HEADER, bearer};
use roomcast_hub::identity::{Caller, Need};
use roomcast_hub::telemetry::Access;
use roomcast_hub::{Hub, HubError, Subscription, Wire};
use roomcast_proto::EncodedEvent;
use roomcast_proto::fast::chat_server::Chat;
use roomcast_proto::v1 as pb;
use roomcast_proto::{AUTHORIZATION_METADATA, USER_METADATA};
use tonic::{Request, Response, Status};

use crate::convert::{self, auth_status, status};

/// How much of a file one `DownloadChunk` carries.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// The service, holding the hub handle.
pub struct Service {
    pub hub: Hub,
    /// Client addresses behind trusted proxies.
    pub edge: EdgeArgs,
    /// How long a client-streaming upload may take to arrive whole.
    pub upload_within: std::time::Duration,
}

impl Service {
    /// The verified caller, from `authorization: Bearer <token>`. A `roomcast-user` metadata
    /// naming anyone else is refused, never believed.
    fn caller_of<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let text = |name: &str| req.metadata().get(name).and_then(|v| v.to_str().ok());
        let token = text(AUTHORIZATION_METADATA).and_then(bearer);
        let caller = self
            .hub
            .identity()
            .authenticate(text(API_KEY_HEADER), token)
            .map_err(auth_status)?;
        if let Some(access) = req.extensions().get::<Access>() {
            access.set_user(&caller.user);
        }
        if let Some(named) = req.metadata().get(USER_METADATA) {
            // Metadata that is not text names nobody the caller could be.
            let named = named.to_str().unwrap_or("(not text)");
            caller.check_named(Some(named)).map_err(auth_status)?;
        }
        Ok(caller)
    }

    /// The client's address (behind a trusted proxy, the one it forwarded).
    fn client_ip<T>(&self, req: &Request<T>) -> std::net::IpAddr {
        let peer = req
            .remote_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let forwarded = req
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        self.edge.client_ip(peer, forwarded)
    }

    /// The verified caller's id.
    fn user<T>(&self, req: &Request<T>) -> Result<String, Status> {
        self.caller_of(req).map(|c| c.user)
    }

    /// Whom a request naming another user (by name or id) means: `NOT_FOUND` if nobody.
    async fn named(&self, typed: &str, need: Need) -> Result<UserId, Status> {
        self.hub
            .identity()
            .resolve(typed, need)
            .await
            .map_err(auth_status)
    }

    /// `Invite` and `RemoveMember`.
    /// Posts an entry: a message, an edit, a deletion or a reaction.
    async fn post(&self, submit: Submit) -> Result<Response<pb::SubmitResponse>, Status> {
        let done = self.hub.submit(submit).await.map_err(status)?;
        Ok(Response::new(pb::SubmitResponse {
            message: Some(convert::message(&done.message)),
            duplicate: done.duplicate,
        }))
    }

    async fn change_membership(
        &self,
        req: Request<pb::MemberRequest>,
        change: MemberChange,
    ) -> Result<Response<pb::MemberResponse>, Status> {
        let user = self.user(&req)?;
        let pb::MemberRequest { room, user: member } = req.into_inner();
        let need = match change {
            MemberChange::Add => Need::Present,
            MemberChange::Remove => Need::Known,
        };
        let member = self.named(&member, need).await?;
        let change = ChangeMember {
            user,
            room,
            member: member.to_string(),
            change,
        };
        let changed = self.hub.ask(change).await.map_err(status)?;
        Ok(Response::new(pb::MemberResponse { changed }))
    }
}

/// An upload that did not arrive whole within its deadline.
fn upload_too_slow(within: std::time::Duration) -> Status {
    Status::deadline_exceeded(format!(
        "an upload must arrive whole within {} s (--request-timeout)",
        within.as_secs()
    ))
}

/// A page length as the proto carries it: 0 means the server's default.
fn page_len(limit: u32) -> Option<usize> {
    (limit > 0).then_some(limit as usize)
}

#[tonic::async_trait]
impl Chat for Service {
    async fn register(&self, req: Request<pb::Credentials>) -> Result<Response<pb::Token>, Status> {
        let from = self.client_ip(&req);
        let pb::Credentials { name, password } = req.into_inner();
        let issued = self
            .hub
            .identity()
            .register(name, password, from)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(convert::token(issued)))
    }

    async fn sign_in(&self, req: Request<pb::Credentials>) -> Result<Response<pb::Token>, Status> {
        let from = self.client_ip(&req);
        let pb::Credentials { name, password } = req.into_inner();
        let issued = self
            .hub
            .identity()
            .sign_in(name, password, from)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(convert::token(issued)))
    }

    async fn guest(&self, req: Request<pb::GuestRequest>) -> Result<Response<pb::Token>, Status> {
        let from = self.client_ip(&req);
        let issued = self
            .hub
            .identity()
            .guest(req.into_inner().nickname, from)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(convert::token(issued)))
    }

    async fn sign_out(
        &self,
        req: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let caller = self.caller_of(&req)?;
        self.hub
            .identity()
            .sign_out(caller)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn open_direct(
        &self,
        req: Request<pb::OpenDirectRequest>,
    ) -> Result<Response<pb::CreateRoomResponse>, Status> {
        let (user, other) = (self.user(&req)?, req.into_inner().user);
        let other = self.named(&other, Need::Present).await?.to_string();
        let created = self
            .hub
            .ask(OpenDirect { user, other })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateRoomResponse {
            room: Some(convert::room(&created.room)),
            created: created.created,
        }))
    }

    async fn invite(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MemberResponse>, Status> {
        self.change_membership(req, MemberChange::Add).await
    }

    async fn remove_member(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MemberResponse>, Status> {
        self.change_membership(req, MemberChange::Remove).await
    }

    async fn create_room(
        &self,
        req: Request<pb::CreateRoomRequest>,
    ) -> Result<Response<pb::CreateRoomResponse>, Status> {
        let user = self.user(&req)?;
        let pb::CreateRoomRequest { room, private } = req.into_inner();
        let create = CreateRoom {
            user,
            room,
            private,
        };
        let created = self.hub.ask(create).await.map_err(status)?;
        Ok(Response::new(pb::CreateRoomResponse {
            room: Some(convert::room(&created.room)),
            created: created.created,
        }))
    }

    async fn delete_room(
        &self,
        req: Request<pb::DeleteRoomRequest>,
    ) -> Result<Response<pb::DeleteRoomResponse>, Status> {
        let (user, room) = (self.user(&req)?, req.into_inner().room);
        self.hub
            .ask(DeleteRoom { user, room })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteRoomResponse {}))
    }

    async fn list_rooms(
        &self,
        req: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let user = self.user(&req)?;
        let pb::ListRoomsRequest { after, limit } = req.into_inner();
        let list = ListRooms {
            user,
            after: (!after.is_empty()).then_some(after),
            limit: page_len(limit),
        };
        let page = self.hub.ask(list).await.map_err(status)?;
        Ok(Response::new(pb::ListRoomsResponse {
            rooms: page.rooms.iter().map(convert::room).collect(),
            next_after: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let user = self.user(&req)?;
        let pb::SubmitRequest {
            room,
            text,
            idempotency_key,
            reply_to,
            attachments,
        } = req.into_inner();
        let kind = Kind::Post {
            reply_to: (reply_to > 0).then_some(Seq(reply_to)),
            attachments: attachments.into_iter().map(Attachment::named).collect(),
        };
        let submit = Submit {
            idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
            ..Submit::new(user, room, text, kind)
        };
        self.post(submit).await
    }

    async fn edit_message(
        &self,
        req: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let user = self.user(&req)?;
        let pb::EditMessageRequest { room, seq, text } = req.into_inner();
        let kind = Kind::Edit { of: Seq(seq) };
        self.post(Submit::new(user, room, text, kind)).await
    }

    async fn delete_message(
        &self,
        req: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let user = self.user(&req)?;
        let pb::DeleteMessageRequest { room, seq } = req.into_inner();
        let kind = Kind::Delete { of: Seq(seq) };
        self.post(Submit::new(user, room, String::new(), kind))
            .await
    }

    async fn react(
        &self,
        req: Request<pb::ReactRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let user = self.user(&req)?;
        let pb::ReactRequest {
            room,
            seq,
            emoji,
            remove,
        } = req.into_inner();
        let emoji = Emoji::parse(&emoji).map_err(|e| status(HubError::Refused(Error::from(e))))?;
        let kind = Kind::React {
            of: Seq(seq),
            emoji,
            added: !remove,
        };
        self.post(Submit::new(user, room, String::new(), kind))
            .await
    }

    async fn typing(
        &self,
        req: Request<pb::TypingRequest>,
    ) -> Result<Response<pb::TypingResponse>, Status> {
        let user = self.user(&req)?;
        let room = req.into_inner().room;
        self.hub.ask(Typing { user, room }).await.map_err(status)?;
        Ok(Response::new(pb::TypingResponse {}))
    }

    async fn mark_read(
        &self,
        req: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let user = self.user(&req)?;
        let pb::MarkReadRequest { room, seq } = req.into_inner();
        let mark = MarkRead {
            user,
            room,
            seq: Seq(seq),
        };
        let unread = self.hub.ask(mark).await.map_err(status)?;
        Ok(Response::new(pb::MarkReadResponse {
            up_to: unread.up_to.0,
            unread: unread.count,
        }))
    }

    async fn moderate(
        &self,
        req: Request<pb::ModerateRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let user = self.user(&req)?;
        let pb::ModerateRequest {
            room,
            user: target,
            action,
            seconds,
        } = req.into_inner();
        let refused = |e: Error| status(HubError::Refused(e));
        let action = Moderation::named(&action, (seconds > 0).then_some(seconds))
            .map_err(|e| refused(e.into()))?;
        let target = self.named(&target, Need::to_moderate(action)).await?;
        let kind = Kind::Moderate {
            user: target,
            action,
        };
        self.post(Submit::new(user, room, String::new(), kind))
            .await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let user = self.user(&req)?;
        let pb::HistoryRequest {
            room,
            cursor,
            limit,
        } = req.into_inner();
        let cursor = match cursor {
            None => Cursor::Newest,
            Some(pb::history_request::Cursor::After(n)) => Cursor::After(Seq(n)),
            Some(pb::history_request::Cursor::Before(n)) => Cursor::Before(Seq(n)),
        };
        let history = History {
            user,
            room,
            cursor,
            limit: page_len(limit),
        };
        let page = self.hub.history(history).await.map_err(status)?;
        Ok(Response::new(convert::history(&page)))
    }

    async fn presence(
        &self,
        req: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceResponse>, Status> {
        let (user, room) = (self.user(&req)?, req.into_inner().room);
        let view = ViewRoom { user, room };
        let view = self.hub.ask(view).await.map_err(status)?;
        Ok(Response::new(pb::PresenceResponse {
            users: convert::presence(&view.presence),
        }))
    }

    async fn upload(
        &self,
        req: Request<tonic::Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let user = self.user(&req)?;
        let deadline = tokio::time::Instant::now() + self.upload_within;
        let mut chunks = req.into_inner();
        let first = tokio::time::timeout_at(deadline, chunks.message()).await;
        let pb::UploadChunk { room, name, data } = first
            .map_err(|_| upload_too_slow(self.upload_within))??
            .unwrap_or_default();
        // The client's chunks as one byte stream, read as the hub keeps it: every chunk of the
        // one room the first names (a later one may leave it empty), and all of them within
        // the deadline.
        let upload_room = room.clone();
        let rest = chunks.map(move |chunk| match chunk {
            Ok(chunk) if chunk.room.is_empty() || chunk.room == upload_room => Ok(chunk.data),
            Ok(chunk) => Err(Status::invalid_argument(format!(
                "an upload goes to one room: this chunk names {}, the first named {upload_room}",
                chunk.room
            ))),
            Err(e) => Err(e),
        });
        let within = self.upload_within;
        let body = futures_util::stream::once(async move { Ok(data) })
            .chain(rest)
            .take_until(tokio::time::sleep_until(deadline))
            .chain(futures_util::stream::once(async move {
                if tokio::time::Instant::now() >= deadline {
                    Err(upload_too_slow(within))
                } else {
                    Ok(Vec::new())
                }
            }))
            .map_err(|e: Status| {
                let kind = if e.code() == tonic::Code::DeadlineExceeded {
                    std::io::ErrorKind::TimedOut
                } else {
                    std::io::ErrorKind::Other
                };
                std::io::Error::new(kind, e.message().to_owned())
            })
            .into_async_read();
        let kept = self
            .hub
            .upload(&user, &room, &name, None, Box::pin(body))
            .await
            .map_err(status)?;
        Ok(Response::new(convert::attachment(&kept.attachment)))
    }

    type DownloadStream =
        Pin<Box<dyn Stream<Item = Result<pb::DownloadChunk, Status>> + Send + 'static>>;

    async fn download(
        &self,
        req: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let user = self.user(&req)?;
        let pb::DownloadRequest { room, id } = req.into_inner();
        let (kept, path) = self
            .hub
            .attachment(&user, &room, &id)
            .await
            .map_err(status)?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Status::unavailable(format!("the file cannot be read: {e}")))?;
        let first = pb::DownloadChunk {
            attachment: Some(convert::attachment(&kept.attachment)),
            data: Vec::new(),
        };
        let bytes = futures_util::stream::unfold(Some(file), |file| async move {
            use tokio::io::AsyncReadExt;
            let mut file = file?;
            let mut buf = vec![0; DOWNLOAD_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let chunk = pb::DownloadChunk {
                        attachment: None,
                        data: buf,
                    };
                    Some((Ok(chunk), Some(file)))
                }
                Err(e) => Some((Err(Status::unavailable(e.to_string())), None)),
            }
        });
        let chunks = futures_util::stream::once(async move { Ok(first) }).chain(bytes);
        Ok(Response::new(Box::pin(chunks)))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<EncodedEvent, Status>> + Send + 'static>>;

    async fn stream(
        &self,
        req: Request<pb::StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = self.caller_of(&req)?;
        let pb::StreamRequest { room, resume_after } = req.into_inner();
        let open = OpenListener {
            user: caller.user.clone(),
            room,
            resume: resume_after.map_or(Resume::Live, |n| Resume::After(Seq(n))),
            create_if_missing: false,
            replacing: None,
        };
        let subscription = Subscription::open(&self.hub, open, Wire::Grpc)
            .await
            .map_err(status)?
            .until_signed_out(self.hub.identity().session_end(&caller));
        let gauge = roomcast_hub::telemetry::ConnectionGauge::new("grpc");
        // h2 flow control polls this only when the client has room: a slow client's
        // subscription falls behind and is resynced, and nobody else waits for it.
        let events =
            futures_util::stream::unfold((subscription, gauge), |(mut sub, gauge)| async move {
                let delivery = sub.next().await?;
                Some((Ok(convert::encoded_event(delivery)), (sub, gauge)))
            });
        Ok(Response::new(Box::pin(events)))
    }
}
