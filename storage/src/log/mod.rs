//! Partition logs. (Being written.)
