//! Arbitrary bytes as a Kafka request frame: decoding never panics, and a frame that decodes is
//! one of the APIs we advertise at a version we advertise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::kafka::dispatch::{Decoded, decode_frame};
use strata::kafka::versions::supported_range;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Request { key, version, .. }) = decode_frame(bytes::Bytes::copy_from_slice(data)) {
        let (lo, hi) = supported_range(key).expect("decoded an unadvertised API");
        assert!((lo..=hi).contains(&version));
    }
});
