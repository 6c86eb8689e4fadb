//! gRPC helpers over the generated tonic client.

use futures_util::StreamExt;
use roomcast_proto::v1::chat_client::ChatClient;
use roomcast_proto::v1::stream_event::Event;
use roomcast_proto::v1::{self as pb, StreamEvent};
use tonic::transport::Channel;
use tonic::{Request, Streaming};

use crate::{PATIENCE, Server};

/// A client of one server: the generated client (it derefs to it), and which server it talks
/// to, so each user's guest token is asked for once (a guest name is held while its token
/// lives) and kept across restarts on the same data dir.
#[derive(Clone)]
pub struct Client {
    chat: ChatClient<Channel>,
    addr: std::net::SocketAddr,
}

impl std::ops::Deref for Client {
    type Target = ChatClient<Channel>;

    fn deref(&self) -> &Self::Target {
        &self.chat
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.chat
    }
}

/// A client connected to `server`.
pub async fn client(server: &Server) -> Client {
    Client {
        chat: ChatClient::connect(server.url("")).await.expect("connects"),
        addr: server.addr,
    }
}

/// A guest token for `user`, from the `Guest` RPC (once per data dir and name); for a name only
/// an account may hold (an admin's), an account's token.
pub async fn guest(c: &mut Client, user: &str) -> String {
    if let Some(token) = crate::known_token(c.addr, user) {
        return token;
    }
    let guest = c
        .guest(pb::GuestRequest {
            nickname: user.into(),
        })
        .await;
    let token = match guest {
        Ok(issued) => issued.into_inner().token,
        // A name only an account may hold (an admin's, made with `--set-password` when the
        // server started): the harness signs in to it, or registers it.
        Err(e) if e.code() == tonic::Code::AlreadyExists => {
            let account = pb::Credentials {
                name: user.into(),
                password: crate::HARNESS_PASSWORD.into(),
            };
            let issued = match c.sign_in(account.clone()).await {
                Ok(issued) => issued,
                Err(_) => c
                    .register(account)
                    .await
                    .unwrap_or_else(|e| panic!("an account for {user}: {e}")),
            };
            issued.into_inner().token
        }
        Err(e) => panic!("a guest token for {user}: {e}"),
    };
    crate::remember_token(c.addr, user, &token);
    token
}

/// `message` with `token` in the `authorization` metadata.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII"),
    );
    req
}

/// `message` sent as `user`, signed in as a guest of that name.
pub async fn as_user<T>(c: &mut Client, user: &str, message: T) -> Request<T> {
    let token = guest(c, user).await;
    with_token(&token, message)
}

/// Creates a public room as `owner`, asserting it worked.
pub async fn create(c: &mut Client, room: &str) {
    let req = as_user(
        c,
        "owner",
        pb::CreateRoomRequest {
            room: room.into(),
            private: false,
        },
    )
    .await;
    c.create_room(req).await.expect("created");
}

/// Submits a message as `user`, asserting it was accepted.
pub async fn submit(c: &mut Client, user: &str, room: &str, text: &str) -> pb::ChatMessage {
    let req = as_user(
        c,
        user,
        pb::SubmitRequest {
            room: room.into(),
            text: text.into(),
            idempotency_key: String::new(),
            reply_to: 0,
            attachments: Vec::new(),
        },
    )
    .await;
    c.submit(req)
        .await
        .expect("accepted")
        .into_inner()
        .message
        .expect("message")
}

/// Opens a stream as `user`, optionally resuming after a sequence number.
pub async fn open(
    c: &mut Client,
    user: &str,
    room: &str,
    resume_after: Option<u64>,
) -> Streaming<StreamEvent> {
    let req = as_user(
        c,
        user,
        pb::StreamRequest {
            room: room.into(),
            resume_after,
        },
    )
    .await;
    c.stream(req).await.expect("stream opens").into_inner()
}

/// The next event; `None` when the stream ends. Fails the test after [`PATIENCE`].
pub async fn next(s: &mut Streaming<StreamEvent>) -> Option<Event> {
    let item = tokio::time::timeout(PATIENCE, s.next())
        .await
        .expect("an event within the patience")?;
    item.expect("a healthy stream").event
}

/// The next entry's sequence number (a message, edit, deletion or reaction), skipping presence.
pub async fn next_seq(s: &mut Streaming<StreamEvent>) -> u64 {
    loop {
        match next(s).await.expect("still open") {
            Event::Message(m)
            | Event::Edited(m)
            | Event::Deleted(m)
            | Event::Reaction(m)
            | Event::Moderation(m) => {
                return m.seq;
            }
            Event::Presence(_) | Event::Joined(_) | Event::Left(_) | Event::Typing(_) => {}
            other @ (Event::Gap(_) | Event::Closed(_)) => panic!("unexpected {other:?}"),
        }
    }
}
