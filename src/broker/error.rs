//! Why the broker refused or failed something, in its own terms. The domain never names a
//! wire error code: the Kafka edge maps each [`ErrorKind`] to Kafka's code
//! ([`crate::kafka::errors`]); another protocol (AMQP, later) maps it to its own.
//!
//! The kinds follow Kafka's model, which is the broker's (topics, partitions, producers,
//! groups), and keep Kafka's names where the concept is Kafka's.

/// What went wrong, as a client can act on it. (Serializable: a controller answers a broker
/// with one, `crate::cluster::rpc`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    // Topics and partitions.
    UnknownTopicOrPartition,
    /// A topic named by an id no topic has (deleted, or re-created under a new id).
    UnknownTopicId,
    TopicAlreadyExists,
    InvalidTopic,
    InvalidPartitions,
    InvalidConfig,
    /// The partition's storage failed (offline, a full disk, damage).
    Storage,
    // Records.
    InvalidRecord,
    CorruptMessage,
    MessageTooLarge,
    UnsupportedForMessageFormat,
    OffsetOutOfRange,
    FencedLeaderEpoch,
    UnknownLeaderEpoch,
    // Idempotent producers.
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    // Consumer groups and committed offsets.
    CoordinatorNotAvailable,
    UnknownMemberId,
    MemberIdRequired,
    FencedInstanceId,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentGroupProtocol,
    InvalidSessionTimeout,
    InvalidGroupId,
    FencedMemberEpoch,
    StaleMemberEpoch,
    UnsupportedAssignor,
    GroupIdNotFound,
    NonEmptyGroup,
    OffsetMetadataTooLarge,
    GroupSubscribedToTopic,
    // A cluster (issue "cluster part 1").
    /// The partition is led by another broker (or by none right now): ask Metadata again.
    NotLeaderOrFollower,
    /// The partition exists but has no leader right now (its broker is fenced).
    LeaderNotAvailable,
    /// The group is coordinated by another broker: FindCoordinator again.
    NotCoordinator,
    /// This broker just became the group's coordinator and is still loading its offsets.
    CoordinatorLoadInProgress,
    /// A replication factor that cannot be placed (more than the brokers, or not supported).
    InvalidReplicationFactor,
    /// The metadata quorum has no active controller reachable from here (an election, or this
    /// node is cut off from the majority).
    NotController,
    /// A broker heartbeat or request with a broker epoch the controller does not know (it
    /// restarted, or was registered again): register again.
    StaleBrokerEpoch,
    /// An `acks=all` produce while the ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas,
    /// The batch was appended but the ISR shrank below `min.insync.replicas` before it was
    /// replicated.
    NotEnoughReplicasAfterAppend,
    /// The request took longer than its timeout (the metadata quorum did not commit in time).
    RequestTimedOut,
    /// A request that is well formed but asks for what cannot be done (Kafka's INVALID_REQUEST).
    InvalidRequest,
    /// Anything else: a bug or the broker shutting down.
    Unknown,
}

/// An [`ErrorKind`] and a message for the client (and the log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BrokerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BrokerError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BrokerError {}

/// Shorthand for [`BrokerError::new`].
pub fn err(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
    BrokerError::new(kind, message)
}
