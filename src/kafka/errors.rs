//! The broker's [`ErrorKind`]s as Kafka error codes: the one place the domain's errors meet the
//! wire.

use kafka_protocol::ResponseError;

use crate::broker::error::ErrorKind;

/// Kafka's error for a broker error kind.
pub fn kafka_error(kind: ErrorKind) -> ResponseError {
    use ErrorKind as K;
    match kind {
        K::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        K::UnknownTopicId => ResponseError::UnknownTopicId,
        K::TopicAlreadyExists => ResponseError::TopicAlreadyExists,
        K::InvalidTopic => ResponseError::InvalidTopicException,
        K::InvalidPartitions => ResponseError::InvalidPartitions,
        K::InvalidConfig => ResponseError::InvalidConfig,
        K::Storage => ResponseError::KafkaStorageError,
        K::InvalidRecord => ResponseError::InvalidRecord,
        K::CorruptMessage => ResponseError::CorruptMessage,
        K::MessageTooLarge => ResponseError::MessageTooLarge,
        K::UnsupportedForMessageFormat => ResponseError::UnsupportedForMessageFormat,
        K::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        K::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        K::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        K::OutOfOrderSequenceNumber => ResponseError::OutOfOrderSequenceNumber,
        K::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        K::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        K::UnknownMemberId => ResponseError::UnknownMemberId,
        K::MemberIdRequired => ResponseError::MemberIdRequired,
        K::FencedInstanceId => ResponseError::FencedInstanceId,
        K::IllegalGeneration => ResponseError::IllegalGeneration,
        K::RebalanceInProgress => ResponseError::RebalanceInProgress,
        K::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        K::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        K::InvalidGroupId => ResponseError::InvalidGroupId,
        K::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        K::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        K::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        K::GroupIdNotFound => ResponseError::GroupIdNotFound,
        K::NonEmptyGroup => ResponseError::NonEmptyGroup,
        K::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        K::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        K::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        K::LeaderNotAvailable => ResponseError::LeaderNotAvailable,
        K::NotCoordinator => ResponseError::NotCoordinator,
        K::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        K::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
        K::NotController => ResponseError::NotController,
        K::RequestTimedOut => ResponseError::RequestTimedOut,
        K::StaleBrokerEpoch => ResponseError::StaleBrokerEpoch,
        K::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        K::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        K::InvalidRequest => ResponseError::InvalidRequest,
        K::Unknown => ResponseError::UnknownServerError,
    }
}

/// Kafka's error code for a broker error kind.
pub fn code(kind: ErrorKind) -> i16 {
    kafka_error(kind).code()
}

/// Kafka's error code for an optional error (0 for none).
pub fn code_of(kind: Option<ErrorKind>) -> i16 {
    kind.map_or(0, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_kafka_code() {
        use ErrorKind as K;
        let all = [
            K::UnknownTopicOrPartition,
            K::UnknownTopicId,
            K::TopicAlreadyExists,
            K::InvalidTopic,
            K::InvalidPartitions,
            K::InvalidConfig,
            K::Storage,
            K::InvalidRecord,
            K::CorruptMessage,
            K::MessageTooLarge,
            K::UnsupportedForMessageFormat,
            K::OffsetOutOfRange,
            K::FencedLeaderEpoch,
            K::UnknownLeaderEpoch,
            K::OutOfOrderSequenceNumber,
            K::InvalidProducerEpoch,
            K::CoordinatorNotAvailable,
            K::UnknownMemberId,
            K::MemberIdRequired,
            K::FencedInstanceId,
            K::IllegalGeneration,
            K::RebalanceInProgress,
            K::InconsistentGroupProtocol,
            K::InvalidSessionTimeout,
            K::InvalidGroupId,
            K::FencedMemberEpoch,
            K::StaleMemberEpoch,
            K::UnsupportedAssignor,
            K::GroupIdNotFound,
            K::NonEmptyGroup,
            K::OffsetMetadataTooLarge,
            K::InvalidRequest,
            K::GroupSubscribedToTopic,
            K::NotLeaderOrFollower,
            K::LeaderNotAvailable,
            K::NotCoordinator,
            K::CoordinatorLoadInProgress,
            K::InvalidReplicationFactor,
            K::NotController,
            K::RequestTimedOut,
            K::StaleBrokerEpoch,
            K::NotEnoughReplicas,
            K::NotEnoughReplicasAfterAppend,
            K::Unknown,
        ];
        let mut codes: Vec<i16> = all.iter().map(|k| code(*k)).collect();
        assert!(codes.iter().all(|c| *c != 0));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(code(K::Storage), 56, "KAFKA_STORAGE_ERROR");
        assert_eq!(code_of(None), 0);
    }
}
