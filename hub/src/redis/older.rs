//! [`RedisOlder`]: messages older than a node's ring, read from the room's stream.

use std::sync::Arc;

use roomcast_core::{Message, RoomId, Seq};

use super::{Job, OlderRead};

/// Messages older than core's ring, read from Redis's streams: blocking calls for the history
/// code (made from the blocking pool), served by the log thread.
pub(crate) struct RedisOlder {
    pub(crate) jobs: async_channel::Sender<Job>,
}

impl RedisOlder {
    fn ask(&self, room: &RoomId, read: OlderRead) -> Result<Vec<Arc<Message>>, String> {
        let (reply, answer) = async_channel::bounded(1);
        let room = room.clone();
        self.jobs
            .try_send(Job::Older { room, read, reply })
            .map_err(|_| "the Redis thread stopped".to_owned())?;
        async_io::block_on(answer.recv()).map_err(|_| "the Redis thread stopped".to_owned())?
    }
}

impl crate::history::Older for RedisOlder {
    fn as_changed(&self) -> bool {
        false
    }

    fn after(
        &self,
        room: &RoomId,
        after: Seq,
        below: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        self.ask(
            room,
            OlderRead::After {
                after,
                below,
                limit,
            },
        )
    }

    fn before(
        &self,
        room: &RoomId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        self.ask(room, OlderRead::Before { before, limit })
    }

    fn first_seq(&self, room: &RoomId) -> Result<Option<Seq>, String> {
        Ok(self.ask(room, OlderRead::First)?.first().map(|m| m.seq))
    }
}
