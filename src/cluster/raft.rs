//! openraft's type configuration for the metadata quorum: what an entry carries and what
//! applying it answers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::image::MetadataRecord;

/// A node of the quorum, as `node.id` (Kafka's ids are `i32`; openraft's `u64`).
pub type NodeId = u64;

/// One metadata log entry's payload: records applied together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub records: Vec<MetadataRecord>,
}

/// What applying a [`Command`] answers: the index it was applied at (a broker's epoch, for a
/// registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The metadata quorum's types.
    pub TypeConfig:
        D = Command,
        R = CommandReply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The quorum's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
