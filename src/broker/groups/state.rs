//! The classic group state machine (Kafka's `GroupCoordinator`), free of wire types.
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable, and back to
//! PreparingRebalance on any membership change (docs/GROUPS.md has the diagram). All of it lives
//! under one mutex per coordinator and never does I/O or waits while holding it: a JoinGroup or
//! SyncGroup that must wait leaves a oneshot sender in its member and awaits the receiver outside
//! the lock. The join barrier completes when every known member has a join pending (and no
//! member id handed out by MEMBER_ID_REQUIRED is still outstanding), or when the rebalance
//! deadline passes; the coordinator's ticker checks deadlines and session expiry.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::broker::error::ErrorKind;
use bytes::Bytes;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup answers.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: Option<ErrorKind>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata): the leader's copy only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub fn error(e: ErrorKind, member_id: &str) -> Self {
        JoinOutcome {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// What a SyncGroup answers.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: Option<ErrorKind>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(e: ErrorKind) -> Self {
        SyncOutcome {
            error: Some(e),
            ..SyncOutcome::default()
        }
    }
}

/// A JoinGroup or SyncGroup: answered now, or later through the receiver.
#[derive(Debug)]
pub enum Step<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Session expiry (reset by every heartbeat, join and sync).
    expires: Instant,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn touch(&mut self, now: Instant) {
        self.expires = now + self.session_timeout;
    }
}

/// One join request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: an unknown member must first take a generated id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first is leader when a leader must be chosen.
    pub members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined, with their expiry.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id.
    statics: BTreeMap<String, String>,
    rebalance_deadline: Instant,
    /// The first rebalance of an empty group waits this long for more members.
    not_before: Instant,
}

/// Coordinator settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

fn new_member_id(client_id: &str) -> String {
    let id = uuid::Uuid::from_u128(crate::broker::random_u128());
    format!("{client_id}-{id}")
}

impl Group {
    pub fn new(id: &str, now: Instant) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            statics: BTreeMap::new(),
            rebalance_deadline: now,
            not_before: now,
        }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn has(&self, id: &str) -> bool {
        self.member(id).is_some()
    }

    /// A static member id that a newer join of the same instance replaced.
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.statics.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Kafka's protocol selection: among protocols every member supports, each member votes
    /// for its most preferred one; most votes wins (ties: the earlier candidate).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in &self.members {
            if let Some((n, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p))
                && let Some(v) = votes.iter_mut().find(|(c, _)| *c == n)
            {
                v.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(c, _)| c.clone())
    }

    /// Whether `protocols` has one in common with every current member (other than `except`).
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        let others: Vec<&Member> = self.members.iter().filter(|m| m.id != except).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.join_waiter.is_some())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Starts (or restarts) a rebalance: followers waiting in SyncGroup are told to rejoin.
    fn prepare_rebalance(&mut self, now: Instant, limits: &Limits, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(ErrorKind::RebalanceInProgress));
                }
            }
        }
        if self.state == GroupState::Empty {
            self.not_before = now + limits.initial_rebalance_delay;
        } else if self.state != GroupState::PreparingRebalance {
            self.not_before = now;
        }
        if self.state != GroupState::PreparingRebalance {
            self.rebalance_deadline = now + self.max_rebalance_timeout();
        }
        tracing::info!(group = %self.id, generation = self.generation, reason, "preparing rebalance");
        self.state = GroupState::PreparingRebalance;
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && ((self.all_joined() && now >= self.not_before) || now >= self.rebalance_deadline)
        {
            self.complete_join(now);
        }
    }

    /// The barrier ends: members that did not rejoin are dropped, the generation advances,
    /// every joined member gets its answer.
    fn complete_join(&mut self, now: Instant) {
        let (stay, gone): (Vec<Member>, Vec<Member>) = std::mem::take(&mut self.members)
            .into_iter()
            .partition(|m| m.join_waiter.is_some());
        self.members = stay;
        for m in gone {
            tracing::info!(group = %self.id, member = %m.id, "member did not rejoin in time; removed");
            if let Some(i) = &m.instance_id {
                self.statics.remove(i);
            }
        }
        self.pending.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect();
        tracing::info!(group = %self.id, generation = self.generation, members = all.len(), %leader, %protocol, "rebalance: join complete");
        for m in &mut self.members {
            m.assignment = Bytes::new();
            m.touch(now);
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// The answer a member gets when it joins without changing anything (Stable or
    /// CompletingRebalance): the current generation.
    fn current_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: Some(protocol.clone()),
            members: if member_id == leader {
                self.members
                    .iter()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            leader,
            member_id: member_id.to_string(),
        }
    }

    fn add_member(&mut self, req: &JoinRequest, id: String, now: Instant) -> &mut Member {
        self.pending.remove(&id);
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        self.members.push(Member {
            id,
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            expires: now + req.session_timeout,
        });
        let last = self.members.len() - 1;
        #[expect(clippy::indexing_slicing, reason = "just pushed")]
        &mut self.members[last]
    }

    /// Registers `id`'s join as pending and returns the receiver for its answer.
    fn await_join(
        &mut self,
        id: &str,
        req: &JoinRequest,
        now: Instant,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.member_mut(id) {
            m.protocols = req.protocols.clone();
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id.clone();
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(ErrorKind::UnknownMemberId, id));
            }
            m.touch(now);
        }
        rx
    }

    pub fn join(&mut self, req: JoinRequest, now: Instant, limits: &Limits) -> Step<JoinOutcome> {
        let fail = |e| Step::Now(JoinOutcome::error(e, &req.member_id));
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return fail(ErrorKind::InconsistentGroupProtocol);
        }
        if req.session_timeout < limits.min_session_timeout
            || req.session_timeout > limits.max_session_timeout
        {
            return fail(ErrorKind::InvalidSessionTimeout);
        }
        if !self.supports(&req.protocol_type, &req.protocols, &req.member_id) {
            return fail(ErrorKind::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_unknown(req, now, limits)
        } else {
            self.join_known(req, now, limits)
        }
    }

    fn join_unknown(
        &mut self,
        req: JoinRequest,
        now: Instant,
        limits: &Limits,
    ) -> Step<JoinOutcome> {
        let id = new_member_id(&req.client_id);
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old) = self.statics.get(&instance).cloned() {
                return self.replace_static(req, &old, id, now, limits);
            }
        } else if req.require_known_member_id {
            self.pending.insert(id.clone(), now + req.session_timeout);
            return Step::Now(JoinOutcome::error(ErrorKind::MemberIdRequired, &id));
        }
        self.add_member(&req, id.clone(), now);
        let rx = self.await_join(&id, &req, now);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, limits, "a new member joined");
        }
        self.maybe_complete_join(now);
        Step::Wait(rx)
    }

    /// Static membership: a restarted instance takes over its old member's place. In a stable
    /// group with unchanged metadata no rebalance happens: it gets the current generation and
    /// (through SyncGroup) its old assignment; the old member id is fenced from now on.
    fn replace_static(
        &mut self,
        req: JoinRequest,
        old: &str,
        id: String,
        now: Instant,
        limits: &Limits,
    ) -> Step<JoinOutcome> {
        let Some(pos) = self.members.iter().position(|m| m.id == old) else {
            return Step::Now(JoinOutcome::error(ErrorKind::UnknownMemberId, ""));
        };
        let unchanged;
        {
            #[expect(clippy::indexing_slicing, reason = "position() just found it")]
            let m = &mut self.members[pos];
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(ErrorKind::FencedInstanceId, old));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(ErrorKind::FencedInstanceId));
            }
            unchanged = m.protocols == req.protocols;
            m.id = id.clone();
            m.client_id = req.client_id.clone();
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.touch(now);
        }
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        tracing::info!(group = %self.id, old, new = %id, "static member replaced");
        match self.state {
            GroupState::Stable if unchanged => Step::Now(self.current_outcome(&id)),
            GroupState::PreparingRebalance => {
                let rx = self.await_join(&id, &req, now);
                self.maybe_complete_join(now);
                Step::Wait(rx)
            }
            _ => {
                let rx = self.await_join(&id, &req, now);
                self.prepare_rebalance(now, limits, "a static member rejoined with new metadata");
                self.maybe_complete_join(now);
                Step::Wait(rx)
            }
        }
    }

    fn join_known(&mut self, req: JoinRequest, now: Instant, limits: &Limits) -> Step<JoinOutcome> {
        let id = req.member_id.clone();
        if self.is_fenced(req.instance_id.as_deref(), &id) {
            return Step::Now(JoinOutcome::error(ErrorKind::FencedInstanceId, &id));
        }
        if !self.has(&id) {
            if self.pending.contains_key(&id) {
                self.add_member(&req, id.clone(), now);
                let rx = self.await_join(&id, &req, now);
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now, limits, "a new member joined");
                }
                self.maybe_complete_join(now);
                return Step::Wait(rx);
            }
            return Step::Now(JoinOutcome::error(ErrorKind::UnknownMemberId, &id));
        }
        let unchanged = self
            .member(&id)
            .is_some_and(|m| m.protocols == req.protocols);
        match self.state {
            GroupState::Empty => Step::Now(JoinOutcome::error(ErrorKind::UnknownMemberId, &id)),
            GroupState::PreparingRebalance => {
                let rx = self.await_join(&id, &req, now);
                self.maybe_complete_join(now);
                Step::Wait(rx)
            }
            GroupState::CompletingRebalance if unchanged => {
                // It lost its join answer: send the same one again.
                if let Some(m) = self.member_mut(&id) {
                    m.touch(now);
                }
                Step::Now(self.current_outcome(&id))
            }
            GroupState::Stable if unchanged && self.leader.as_deref() != Some(id.as_str()) => {
                if let Some(m) = self.member_mut(&id) {
                    m.touch(now);
                }
                Step::Now(self.current_outcome(&id))
            }
            _ => {
                let rx = self.await_join(&id, &req, now);
                self.prepare_rebalance(now, limits, "a member rejoined");
                self.maybe_complete_join(now);
                Step::Wait(rx)
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one per SyncGroup field")]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<SyncOutcome> {
        let fail = |e| Step::Now(SyncOutcome::error(e));
        if self.is_fenced(instance_id, member_id) {
            return fail(ErrorKind::FencedInstanceId);
        }
        if !self.has(member_id) {
            return fail(ErrorKind::UnknownMemberId);
        }
        if generation != self.generation {
            return fail(ErrorKind::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return fail(ErrorKind::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty => fail(ErrorKind::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ErrorKind::RebalanceInProgress),
            GroupState::Stable => {
                let a = self
                    .member(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                if let Some(m) = self.member_mut(member_id) {
                    m.touch(now);
                }
                Step::Now(self.sync_ok(a))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.member_mut(member_id) {
                    m.touch(now);
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncOutcome::error(ErrorKind::UnknownMemberId));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    let ok = self.sync_ok(Bytes::new());
                    for m in &mut self.members {
                        m.assignment = by_member.remove(&m.id).unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncOutcome {
                                assignment: m.assignment.clone(),
                                ..ok.clone()
                            });
                        }
                    }
                    self.state = GroupState::Stable;
                    tracing::info!(group = %self.id, generation = self.generation, "rebalance: assignments synced, stable");
                }
                Step::Wait(rx)
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ErrorKind> {
        if self.is_fenced(instance_id, member_id) {
            return Some(ErrorKind::FencedInstanceId);
        }
        if !self.has(member_id) {
            return Some(ErrorKind::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(ErrorKind::IllegalGeneration);
        }
        if let Some(m) = self.member_mut(member_id) {
            m.touch(now);
        }
        match self.state {
            GroupState::Empty => Some(ErrorKind::UnknownMemberId),
            GroupState::PreparingRebalance => Some(ErrorKind::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// LeaveGroup for one member (by id, or for v3+ static members by instance id alone).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        limits: &Limits,
    ) -> Option<ErrorKind> {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(i)) => match self.statics.get(i) {
                Some(id) => id.clone(),
                None => return Some(ErrorKind::UnknownMemberId),
            },
            _ => {
                if self.is_fenced(instance_id, member_id) {
                    return Some(ErrorKind::FencedInstanceId);
                }
                member_id.to_string()
            }
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now);
            return None;
        }
        if !self.has(&id) {
            return Some(ErrorKind::UnknownMemberId);
        }
        self.remove_member(&id, now, limits, "a member left");
        None
    }

    fn remove_member(&mut self, id: &str, now: Instant, limits: &Limits, reason: &str) {
        let Some(pos) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(pos);
        if let Some(w) = m.join_waiter {
            let _ = w.send(JoinOutcome::error(ErrorKind::UnknownMemberId, id));
        }
        if let Some(w) = m.sync_waiter {
            let _ = w.send(SyncOutcome::error(ErrorKind::UnknownMemberId));
        }
        if let Some(i) = &m.instance_id
            && self.statics.get(i).is_some_and(|s| s == id)
        {
            self.statics.remove(i);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        tracing::info!(group = %self.id, member = id, reason, "member removed");
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, limits, reason);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// Timers: expired MEMBER_ID_REQUIRED ids, expired sessions, the rebalance deadline.
    pub fn tick(&mut self, now: Instant, limits: &Limits) {
        let before = self.pending.len();
        self.pending.retain(|_, expires| *expires > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.expires <= now && m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, now, limits, "session timeout");
        }
        if self.pending.len() != before || self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now);
        }
    }

    /// Commit checks (Kafka's `doCommitOffsets`): `None` means the commit may proceed.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ErrorKind> {
        if self.is_fenced(instance_id, member_id) {
            return Some(ErrorKind::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return None;
        }
        if self.state == GroupState::CompletingRebalance {
            return Some(ErrorKind::RebalanceInProgress);
        }
        if !self.has(member_id) {
            return Some(ErrorKind::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(ErrorKind::IllegalGeneration);
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        initial_rebalance_delay: Duration::ZERO,
        min_session_timeout: Duration::from_millis(10),
        max_session_timeout: Duration::from_secs(600),
    };

    fn req(member: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(1),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            require_known_member_id: false,
        }
    }

    fn ready(step: Step<JoinOutcome>) -> JoinOutcome {
        match step {
            Step::Now(o) => o,
            Step::Wait(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    #[test]
    fn protocol_vote_picks_the_most_preferred_common_protocol() {
        let t = Instant::now();
        let mut g = Group::new("g", t);
        let a = ready(g.join(req("", &["range", "sticky"]), t, &LIMITS));
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        // Two more members prefer sticky: sticky wins 2 to 1 once all have rejoined.
        let mut b = match g.join(req("", &["sticky", "range"]), t, &LIMITS) {
            Step::Wait(rx) => rx,
            Step::Now(o) => panic!("{o:?}"),
        };
        let mut c = match g.join(req("", &["sticky", "range", "x"]), t, &LIMITS) {
            Step::Wait(rx) => rx,
            Step::Now(o) => panic!("{o:?}"),
        };
        assert!(
            b.try_recv().is_err(),
            "the barrier waits for the first member"
        );
        let a2 = ready(g.join(req(&a.member_id, &["range", "sticky"]), t, &LIMITS));
        assert_eq!(a2.protocol_name.as_deref(), Some("sticky"));
        assert_eq!(a2.members.len(), 3);
        assert_eq!(b.try_recv().unwrap().generation, 2);
        assert_eq!(c.try_recv().unwrap().leader, a.member_id);
        // A member sharing no protocol with the group is refused.
        let bad = ready(g.join(req("", &["other"]), t, &LIMITS));
        assert_eq!(bad.error, Some(ErrorKind::InconsistentGroupProtocol));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_when_the_rebalance_timeout_passes() {
        let t = Instant::now();
        let mut g = Group::new("g", t);
        let a = ready(g.join(req("", &["range"]), t, &LIMITS));
        assert!(matches!(
            g.sync(&a.member_id, None, 1, None, None, vec![], t),
            Step::Wait(_)
        ));
        let mut b = match g.join(req("", &["range"]), t, &LIMITS) {
            Step::Wait(rx) => rx,
            Step::Now(o) => panic!("{o:?}"),
        };
        // A keeps heartbeating but never rejoins.
        let later = t + Duration::from_millis(500);
        assert_eq!(
            g.heartbeat(&a.member_id, None, 1, later),
            Some(ErrorKind::RebalanceInProgress)
        );
        g.tick(later, &LIMITS);
        assert!(b.try_recv().is_err(), "deadline not reached yet");
        g.tick(t + Duration::from_millis(1100), &LIMITS);
        let jb = b.try_recv().unwrap();
        assert_eq!((jb.generation, jb.members.len()), (2, 1));
        assert_eq!(jb.leader, jb.member_id, "the remaining member leads");
        assert_eq!(
            g.heartbeat(&a.member_id, None, 1, later),
            Some(ErrorKind::UnknownMemberId)
        );
        // A stale-generation rejoin by the dropped member is refused; it must join anew.
        let stale = ready(g.join(req(&a.member_id, &["range"]), later, &LIMITS));
        assert_eq!(stale.error, Some(ErrorKind::UnknownMemberId));
    }

    #[test]
    fn a_leave_during_the_join_barrier_completes_it_for_the_others() {
        let t = Instant::now();
        let mut g = Group::new("g", t);
        let a = ready(g.join(req("", &["range"]), t, &LIMITS));
        let mut b = match g.join(req("", &["range"]), t, &LIMITS) {
            Step::Wait(rx) => rx,
            Step::Now(o) => panic!("{o:?}"),
        };
        assert_eq!(g.leave(&a.member_id, None, t, &LIMITS), None);
        let jb = b.try_recv().unwrap();
        assert_eq!((jb.error, jb.generation, jb.members.len()), (None, 2, 1));
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(
            g.leave(&a.member_id, None, t, &LIMITS),
            Some(ErrorKind::UnknownMemberId)
        );
    }
}
