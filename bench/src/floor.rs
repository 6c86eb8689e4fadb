//! The floor: the least work that puts the same bytes on the same sockets. No HTTP framing
//! beyond a response head, no rooms, no sign-in, no history: each published line becomes one
//! SSE-sized frame, and every frame pending goes to every socket in one write. A server can
//! only approach this; the distance to it is what a server adds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

/// Frames buffered for the writers before a slow one loses some.
const BACKLOG: usize = 1 << 16;

/// Serves until killed: `GET` connections listen, `PUB <room> <text>` lines publish.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let (frames, _) = broadcast::channel::<Bytes>(BACKLOG);
    // One writer per core, each owning a share of the sockets.
    let writers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = Vec::new();
    for _ in 0..writers {
        let (add, added) = mpsc::unbounded_channel();
        tokio::spawn(write_shard(frames.subscribe(), added));
        shards.push(add);
    }
    let seq = Arc::new(Mutex::new(0));
    let next = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (frames, seq, next, shards) =
            (frames.clone(), seq.clone(), next.clone(), shards.clone());
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if !line.starts_with("GET ") {
                return publisher(stream, line, frames, seq).await;
            }
            // Skip the rest of the request head, answer, and hand the socket to a writer.
            while line.trim() != "" {
                line.clear();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
            }
            let mut socket = stream.into_inner();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: live\n\n";
            if socket.write_all(head.as_bytes()).await.is_ok() {
                let shard = next.fetch_add(1, Ordering::Relaxed) as usize % shards.len();
                let _ = shards[shard].send(socket);
            }
        });
    }
}

/// Turns each `PUB <room> <text>` line into a frame as large as roomcast's for the same message.
async fn publisher(
    mut stream: BufReader<TcpStream>,
    mut line: String,
    frames: broadcast::Sender<Bytes>,
    seq: Arc<Mutex<u64>>,
) {
    loop {
        let mut parts = line.trim_end().splitn(3, ' ');
        if let (Some("PUB"), Some(room), Some(text)) = (parts.next(), parts.next(), parts.next()) {
            // Numbering and sending under one lock, so frames go out in sequence order.
            let mut last = seq.lock().unwrap_or_else(PoisonError::into_inner);
            *last += 1;
            let seq = *last;
            let frame = format!(
                "id: {seq}\nevent: message\ndata: {{\"type\":\"message\",\"id\":\"{seq:016x}\",\"room\":\"{room}\",\"seq\":{seq},\"user\":\"pub\",\"text\":\"{text}\",\"sent_at\":\"2026-01-01T00:00:00.000Z\"}}\n\n"
            );
            let _ = frames.send(Bytes::from(frame));
            drop(last);
        }
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

/// Writes every pending frame to each of its sockets in one write; drops a socket that fails
/// (a peer that hung up is noticed at the next write).
async fn write_shard(
    mut frames: broadcast::Receiver<Bytes>,
    mut added: mpsc::UnboundedReceiver<TcpStream>,
) {
    let mut sockets: Vec<TcpStream> = Vec::new();
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            socket = added.recv() => match socket {
                Some(socket) => sockets.push(socket),
                None => return,
            },
            frame = frames.recv() => {
                batch.clear();
                match frame {
                    Ok(frame) => batch.extend_from_slice(&frame),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                while let Ok(frame) = frames.try_recv() {
                    batch.extend_from_slice(&frame);
                }
                let mut alive = Vec::with_capacity(sockets.len());
                for mut socket in sockets.drain(..) {
                    if socket.write_all(&batch).await.is_ok() {
                        alive.push(socket);
                    }
                }
                sockets = alive;
            }
        }
    }
}
