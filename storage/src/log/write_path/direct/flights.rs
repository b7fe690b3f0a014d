//! The direct writes of a log from staging to completion: at most [`MAX_FLYING`] at the device,
//! the rest merged; rolls held until the writes before them completed.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::Result;
use crate::io::DirectBuf;
use crate::log::segment::{Segment, SegmentState};

use super::stage::DirectWrite;

/// A write as submitted to a segment's [`DirectFile`](crate::io::DirectFile).
#[derive(Debug)]
pub(crate) struct Part {
    pub id: u64,
    pub segment: Arc<Segment>,
    pub bufs: Vec<DirectBuf>,
    pub offset: u64,
    /// An fdatasync follows the write (under id `id | SYNC_TAG`), and the flight completes
    /// with it.
    pub sync: bool,
}

/// Marks the id of the sync that follows a write ([`Part::sync`]).
pub(crate) const SYNC_TAG: u64 = 1 << 63;

/// A write in flight, and what to publish when it completes.
#[derive(Debug)]
pub(crate) struct Flight {
    pub id: u64,
    pub segment: Arc<Segment>,
    pub publish: Option<(SegmentState, u64)>,
    /// Completes with the sync after the write, not with the write.
    pub sync: bool,
    /// The write completed; its sync has not yet.
    pub written: bool,
    /// Published only once every rolled segment is sealed (`flush.messages`: what is
    /// acknowledged after a sync must have everything before it durable too).
    pub needs_seals: bool,
}

#[derive(Debug)]
enum Staged<R> {
    Write(DirectWrite),
    /// A roll, applied once every write staged before it completed.
    Roll(R),
}

/// One step of [`Flights::take_next`], to carry out in order.
#[derive(Debug)]
pub(crate) enum Step<R> {
    /// Apply a roll: every write staged before it has completed.
    Roll(R),
    /// Nothing to write and nothing in flight before it: publish now.
    Publish(Flight),
    /// Submit this write; it is now in flight.
    Submit(Part),
}

/// Writes submitted and not yet completed, per log: one at the device and one queued behind it
/// (a direct file performs its writes in order, see [`DirectFile`](crate::io::DirectFile)), so
/// the next write starts the moment the previous one completes, without waiting for a thread to
/// notice. Writes staged beyond that wait and are merged into one.
pub(crate) const MAX_FLYING: usize = 2;

/// The direct writes of a log from staging to completion. At most [`MAX_FLYING`] are
/// submitted; everything staged meanwhile is merged into the next write (see
/// [`DirectWrite::absorb`]): the busier the producers, the larger each write. More in flight
/// would not help: the writes of a file run one after another (consecutive writes overlap by a
/// block, and extending O_DIRECT writes serialise in the file system anyway, ext4 taking the
/// inode lock for each: two running together measured slower than one here). A roll waits until
/// every write before it completed, and the writes after it wait for the roll, so everything in
/// flight is on one file. Pure bookkeeping, behind the log's lock; `R` is what a roll carries.
#[derive(Debug)]
pub(crate) struct Flights<R> {
    staged: VecDeque<Staged<R>>,
    /// Submitted, oldest first.
    flying: VecDeque<Flight>,
    /// Completed, not yet published (held behind one that waits for seals), oldest first.
    pub ready: VecDeque<Flight>,
    next_id: u64,
}

impl<R> Default for Flights<R> {
    fn default() -> Self {
        Flights {
            staged: VecDeque::new(),
            flying: VecDeque::new(),
            ready: VecDeque::new(),
            next_id: 0,
        }
    }
}

impl<R> Flights<R> {
    /// Nothing is staged, in flight or waiting to be published.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.flying.is_empty() && self.ready.is_empty()
    }

    /// The segment of the writes in flight, if any: the file to wait on.
    pub fn flying(&self) -> Option<&Arc<Segment>> {
        self.flying.front().map(|f| &f.segment)
    }

    pub fn stage(&mut self, w: DirectWrite) {
        self.staged.push_back(Staged::Write(w));
    }

    pub fn roll(&mut self, r: R) {
        self.staged.push_back(Staged::Roll(r));
    }

    /// What to do now: the rolls every earlier write has completed before, and writes to
    /// submit while fewer than [`MAX_FLYING`] are in flight, each made of every staged write
    /// that continues it in the same buffer.
    ///
    /// `sync` says for each write submitted whether an fdatasync must follow it before it
    /// counts as completed, and whether its publish waits for the seals of rolled segments.
    pub fn take_next(
        &mut self,
        mut sync: impl FnMut(&Flight) -> (bool, bool),
    ) -> Result<Vec<Step<R>>> {
        let mut steps = Vec::new();
        loop {
            match self.staged.front() {
                None => break,
                Some(Staged::Roll(_)) => {
                    if !self.flying.is_empty() {
                        break;
                    }
                    if let Some(Staged::Roll(r)) = self.staged.pop_front() {
                        steps.push(Step::Roll(r));
                    }
                }
                Some(Staged::Write(_)) => {
                    if self.flying.len() >= MAX_FLYING {
                        break;
                    }
                    let Some(Staged::Write(mut w)) = self.staged.pop_front() else {
                        break;
                    };
                    while matches!(self.staged.front(), Some(Staged::Write(_))) {
                        let Some(Staged::Write(next)) = self.staged.pop_front() else {
                            break;
                        };
                        if let Err(next) = w.absorb(next) {
                            self.staged.push_front(Staged::Write(next));
                            break;
                        }
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    match w.into_part(id)? {
                        (Some(mut part), mut flight) => {
                            (flight.sync, flight.needs_seals) = sync(&flight);
                            part.sync = flight.sync;
                            self.flying.push_back(flight);
                            steps.push(Step::Submit(part));
                        }
                        // Nothing to write: what it publishes is published with the write
                        // in flight before it, or now.
                        (None, flight) => match self.flying.back_mut() {
                            Some(last) => last.publish = flight.publish.or(last.publish),
                            None => steps.push(Step::Publish(flight)),
                        },
                    }
                }
            }
        }
        Ok(steps)
    }

    /// Operation `id` (a write, or a write's sync with [`SYNC_TAG`]) completed: returns the
    /// flight if that completes the oldest in flight (a direct file reports completions in
    /// submission order), else `None`.
    pub fn completed(&mut self, id: u64) -> Option<Flight> {
        let is_sync = id & SYNC_TAG != 0;
        let id = id & !SYNC_TAG;
        let front = self.flying.front_mut().filter(|f| f.id == id)?;
        if front.sync && !is_sync {
            front.written = true;
            return None;
        }
        if front.sync && !front.written {
            return None;
        }
        self.flying.pop_front()
    }

    /// Forgets everything (the log failed; writes already at the device finish on their own).
    pub fn clear(&mut self) {
        self.staged.clear();
        self.flying.clear();
        self.ready.clear();
    }
}
