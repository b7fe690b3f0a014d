//! Codecs. (Being written.)
