//! Arbitrary bytes as a Kafka request frame: decoding never panics, a frame that decodes is one
//! of the APIs we advertise at a version we advertise, and the hand-written reader of the old
//! Produce versions (v0-v2, answered UNSUPPORTED_VERSION) never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::kafka::api::produce_legacy::produce_unsupported_version;
use strata::kafka::dispatch::{Decoded, decode_frame};
use strata::kafka::versions::supported_range;

fuzz_target!(|data: &[u8]| {
    match decode_frame(bytes::Bytes::copy_from_slice(data)) {
        Ok(Decoded::Request { key, version, .. }) => {
            let (lo, hi) = supported_range(key).expect("decoded an unadvertised API");
            assert!((lo..=hi).contains(&version));
        }
        Ok(Decoded::ProduceLegacy { version, body }) => {
            assert!((0..3).contains(&version));
            let _ = produce_unsupported_version(&body, version);
        }
        _ => {}
    }
    // The old-Produce reader on the raw bytes too, at each version.
    for v in 0..3 {
        let _ = produce_unsupported_version(data, v);
    }
});
