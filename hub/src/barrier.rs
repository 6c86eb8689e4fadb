//! [`Barrier`]: outputs held in order until the store has committed what they depend on.
//!
//! Each step of the hub produces outputs (deliveries, answers) and possibly a batch for the
//! store. An output may be released only once its step's batch, and every earlier batch, is
//! committed; and never before an output of an earlier step. The barrier is plain data, so the
//! ordering can be tested without threads or a database.

use std::collections::VecDeque;

/// Outputs waiting for commits, oldest first.
#[derive(Debug)]
pub(crate) struct Barrier<T> {
    /// Batches handed to the writer so far.
    written: u64,
    /// Batches the writer has committed so far.
    durable: u64,
    /// Outputs and the batch count that must be durable before each is released.
    held: VecDeque<(u64, T)>,
}

impl<T> Default for Barrier<T> {
    fn default() -> Self {
        Barrier {
            written: 0,
            durable: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> Barrier<T> {
    /// Ends a step: `wrote` says whether it handed a batch to the writer. Returns the outputs
    /// that may go at once (none are held and nothing is pending), or holds them all.
    pub(crate) fn step(&mut self, wrote: bool, outputs: Vec<T>) -> Vec<T> {
        if wrote {
            self.written += 1;
        }
        if self.durable >= self.written && self.held.is_empty() {
            return outputs;
        }
        let at = self.written;
        self.held
            .extend(outputs.into_iter().map(|output| (at, output)));
        Vec::new()
    }

    /// The writer reports `durable` batches committed: the outputs now released, in order.
    pub(crate) fn committed(&mut self, durable: u64) -> Vec<T> {
        self.durable = self.durable.max(durable);
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(at, _)| *at <= self.durable) {
            released.extend(self.held.pop_front().map(|(_, output)| output));
        }
        released
    }

    /// Everything written so far is committed (the writer stopped cleanly): release all.
    pub(crate) fn flush(&mut self) -> Vec<T> {
        self.committed(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pending_batches_outputs_go_at_once() {
        let mut b = Barrier::default();
        assert_eq!(b.step(false, vec!["presence"]), ["presence"]);
    }

    #[test]
    fn a_step_waits_for_its_own_batch() {
        let mut b = Barrier::default();
        assert!(b.step(true, vec!["ack 1"]).is_empty());
        assert!(b.committed(0).is_empty());
        assert_eq!(b.committed(1), ["ack 1"]);
        assert!(b.committed(1).is_empty(), "released once");
    }

    #[test]
    fn a_step_without_a_batch_still_waits_behind_earlier_ones() {
        let mut b = Barrier::default();
        assert!(b.step(true, vec!["message 1"]).is_empty());
        // A presence change after an unflushed message must not overtake it.
        assert!(b.step(false, vec!["joined"]).is_empty());
        assert_eq!(b.committed(1), ["message 1", "joined"]);
        assert_eq!(b.step(false, vec!["left"]), ["left"]);
    }

    #[test]
    fn commits_release_in_step_order_and_only_up_to_what_is_durable() {
        let mut b = Barrier::default();
        assert!(b.step(true, vec![1, 2]).is_empty());
        assert!(b.step(true, vec![3]).is_empty());
        assert!(b.step(false, vec![4]).is_empty());
        assert!(b.step(true, vec![5]).is_empty());
        assert_eq!(b.committed(2), [1, 2, 3, 4]);
        // A stale report changes nothing.
        assert!(b.committed(1).is_empty());
        assert_eq!(b.committed(3), [5]);
    }

    #[test]
    fn a_commit_that_covers_several_batches_releases_them_together() {
        let mut b = Barrier::default();
        for n in 0..5 {
            assert!(b.step(true, vec![n]).is_empty());
        }
        assert_eq!(b.committed(5), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn flush_releases_everything_written() {
        let mut b = Barrier::default();
        assert!(b.step(true, vec!["a"]).is_empty());
        assert!(b.step(false, vec!["b"]).is_empty());
        assert_eq!(b.flush(), ["a", "b"]);
    }
}
