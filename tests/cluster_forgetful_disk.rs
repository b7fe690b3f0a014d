//! Scenario: a voter of the metadata quorum loses power at every operation of a workload on its
//! Raft storage (the metadata log on the engine, the vote in `cluster/raft-state`), on the
//! engine's fake disk that forgets whatever was not synced. Raft's safety rests on what a voter
//! acknowledged surviving: every entry it said was stored (openraft counts it toward a commit)
//! and every vote it saved (it must not vote twice in a term) must be there after the crash,
//! truncated entries must stay gone, and a purge must not bring back what it removed.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use strata::cluster::image::MetadataRecord;
use strata::cluster::log_store::LogStore;
use strata::cluster::raft::{Command, TypeConfig};
use strata_storage::io::faulty::{FailingBackend, ForgetfulBackend, TornMode};
use strata_storage::io::{IoBackend, backend_from_env};

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command {
            records: vec![MetadataRecord::InitCluster {
                cluster_id: format!("t{term}-i{index}"),
            }],
        }),
    }
}

/// What the store acknowledged before the disk died.
#[derive(Debug, Default)]
struct Acked {
    /// index -> term of the entry acknowledged there last.
    entries: BTreeMap<u64, u64>,
    vote_term: Option<u64>,
    /// Entries from this index on were truncated (and not appended again since).
    truncated_from: Option<u64>,
    purged_upto: Option<u64>,
}

/// One operation of the workload: records what it acknowledged when it returns `Ok`.
type Step = Box<dyn Fn(&LogStore, &mut Acked) -> anyhow::Result<()>>;

/// Appends, votes, truncates a conflicting suffix and purges, until an operation fails; then
/// drops the store without closing it, as a power cut would.
fn workload(dir: &Path, backend: Arc<dyn IoBackend>) -> Acked {
    let mut acked = Acked::default();
    let Ok(store) = LogStore::open(dir, backend) else {
        return acked;
    };
    let steps: Vec<Step> = vec![
        Box::new(|s, a| {
            s.save_vote_now(Vote::new(1, 1))?;
            a.vote_term = Some(1);
            Ok(())
        }),
        Box::new(|s, a| {
            s.append_entries((0..4).map(|i| entry(1, i)).collect())?;
            a.entries.extend((0..4).map(|i| (i, 1)));
            Ok(())
        }),
        Box::new(|s, a| {
            s.append_entries(vec![entry(1, 4), entry(1, 5)])?;
            a.entries.extend([(4, 1), (5, 1)]);
            Ok(())
        }),
        // A new leader in term 2 overwrites the uncommitted suffix from index 3.
        Box::new(|s, a| {
            s.save_vote_now(Vote::new(2, 2))?;
            a.vote_term = Some(2);
            Ok(())
        }),
        Box::new(|s, a| {
            s.truncate_from(3)?;
            a.entries.retain(|i, _| *i < 3);
            a.truncated_from = Some(3);
            Ok(())
        }),
        Box::new(|s, a| {
            s.append_entries(vec![entry(2, 3)])?;
            a.entries.insert(3, 2);
            a.truncated_from = Some(4);
            Ok(())
        }),
        Box::new(|s, a| {
            s.append_entries((4..8).map(|i| entry(2, i)).collect())?;
            a.entries.extend((4..8).map(|i| (i, 2)));
            a.truncated_from = None;
            Ok(())
        }),
        // A snapshot covers up to index 2: the entries before it are purged.
        Box::new(|s, a| {
            s.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 2))?;
            a.purged_upto = Some(2);
            a.entries.retain(|i, _| *i > 2);
            Ok(())
        }),
        Box::new(|s, a| {
            s.append_entries(vec![entry(2, 8)])?;
            a.entries.insert(8, 2);
            Ok(())
        }),
    ];
    for step in &steps {
        if step(&store, &mut acked).is_err() {
            break;
        }
    }
    drop(store);
    acked
}

fn check(dir: &Path, acked: &Acked, what: &str) {
    let store = LogStore::open(
        dir,
        Arc::new(strata_storage::io::plain::PlainBackend::new()),
    )
    .unwrap_or_else(|e| panic!("{what}: the metadata log did not reopen: {e:#}"));
    if let Some(t) = acked.vote_term {
        let v = store
            .vote()
            .unwrap_or_else(|| panic!("{what}: the vote of term {t} is lost"));
        assert!(
            v.leader_id().term >= t,
            "{what}: vote {v:?}, acknowledged term {t}"
        );
    }
    let got: BTreeMap<u64, u64> = store
        .read_entries(0, u64::MAX)
        .unwrap_or_else(|e| panic!("{what}: reading the log: {e:#}"))
        .into_iter()
        .map(|e| (e.log_id.index, e.log_id.leader_id.term))
        .collect();
    // A purge may have been under way: entries it covers may be gone, but only if the purge
    // itself (saved first) survived: the log never starts past the last purged id + 1.
    let purged = store.last_purged().map(|l| l.index);
    let start = store.log().log_start_offset();
    assert!(
        start == 0 || purged.is_some_and(|p| start <= p + 1),
        "{what}: the log starts at {start} but the last purge is {purged:?}"
    );
    for (i, term) in &acked.entries {
        if purged.is_some_and(|p| *i <= p) {
            continue;
        }
        assert_eq!(
            got.get(i),
            Some(term),
            "{what}: acknowledged entry {i} of term {term} is not there (log: {got:?})"
        );
    }
    if let Some(from) = acked.truncated_from {
        for (i, term) in &got {
            assert!(
                *i < from || *term == 2,
                "{what}: entry {i} of term {term} truncated, yet back after the crash"
            );
        }
    }
    if let Some(p) = acked.purged_upto {
        assert!(
            store.last_purged().is_some_and(|l| l.index >= p),
            "{what}: the purge up to {p} is forgotten"
        );
    }
    // Indexes are contiguous: no gap below the last entry.
    if let (Some(first), Some(last)) = (got.keys().next(), got.keys().next_back()) {
        assert_eq!(
            got.len() as u64,
            last - first + 1,
            "{what}: a gap in the log {got:?}"
        );
    }
}

fn sweep(torn: fn(u64) -> TornMode) {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting =
            FailingBackend::counting(Arc::new(ForgetfulBackend::wrapping(backend_from_env())));
        let acked = workload(dir.path(), Arc::new(counting.clone()));
        assert_eq!(
            acked.entries.len(),
            6,
            "the workload runs through: {acked:?}"
        );
        counting.ops()
    };
    assert!(total > 20, "{total} operations");
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend_from_env());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let acked = workload(dir.path(), Arc::new(failing));
        disk.crash(torn(n));
        check(
            dir.path(),
            &acked,
            &format!("power cut at operation {n} of {total}"),
        );
    }
}

#[test]
fn given_a_voter_on_a_disk_that_forgets_unsynced_writes_when_the_power_fails_at_every_operation_then_nothing_it_acknowledged_is_lost()
 {
    sweep(|_| TornMode::Clean);
}

#[test]
fn given_a_power_cut_that_leaves_garbled_tails_at_every_operation_then_the_voter_keeps_what_it_acknowledged()
 {
    sweep(|n| TornMode::PartialTail { seed: n * 31 + 7 });
}
