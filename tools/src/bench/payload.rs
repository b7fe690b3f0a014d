//! Message contents: a tiny PRNG and pools of random or text bytes that messages are cut from.
//!
//! Generating bytes per message would make the load generator measure its PRNG, so each run
//! fills one shared pool once and producers take consecutive, non-overlapping windows of it. The
//! pool is at least twice the size of a batch, so no batch ever contains the same bytes twice and
//! `random` payloads stay incompressible inside a batch.

use super::args::Payload;

/// xorshift64* (Vigna): fast, good enough for payloads and jitter, not for anything secret.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator; a zero seed is replaced (xorshift never leaves the all-zero state).
    pub fn new(seed: u64) -> Self {
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0; slightly biased, which does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            let n = chunk.len();
            if let Some(src) = v.get(..n) {
                chunk.copy_from_slice(src);
            }
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or("")
    }
}

/// Smallest pool, whatever the batch size.
pub const MIN_POOL_BYTES: usize = 8 << 20;

/// A pool of payload bytes and a cursor over it.
#[derive(Debug)]
pub struct PayloadPool {
    bytes: Vec<u8>,
    message_size: usize,
}

impl PayloadPool {
    /// Fills a pool large enough for `batch_bytes` batches of `message_size` messages.
    pub fn new(kind: Payload, message_size: usize, batch_bytes: usize, seed: u64) -> Self {
        let len = MIN_POOL_BYTES
            .max(batch_bytes.saturating_mul(2))
            .saturating_add(message_size);
        let mut rng = XorShift64::new(seed);
        let bytes = match kind {
            Payload::Random => {
                let mut v = vec![0u8; len];
                rng.fill(&mut v);
                v
            }
            Payload::Text => text_lines(&mut rng, len),
        };
        PayloadPool {
            bytes,
            message_size,
        }
    }

    /// The `n`-th message window: consecutive messages take consecutive windows, wrapping.
    pub fn message(&self, n: u64) -> &[u8] {
        let windows = (self.bytes.len() / self.message_size.max(1)).max(1) as u64;
        let start = (n % windows) as usize * self.message_size;
        self.bytes
            .get(start..start + self.message_size)
            .unwrap_or(&[])
    }

    /// Number of distinct windows before the pool repeats.
    pub fn windows(&self) -> u64 {
        (self.bytes.len() / self.message_size.max(1)).max(1) as u64
    }
}

/// `len` bytes of log lines that look like a web service's: ISO timestamps, levels, thread
/// names, HTTP paths with ids, status codes, durations and request ids. Compresses several-fold
/// with zstd, like real application logs.
pub fn text_lines(rng: &mut XorShift64, len: usize) -> Vec<u8> {
    const LEVELS: [&str; 6] = ["INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"];
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
    const PATHS: [&str; 8] = [
        "/api/v1/users/{}/orders",
        "/api/v1/orders/{}",
        "/api/v2/catalog/items/{}/price",
        "/internal/health",
        "/api/v1/sessions/{}/refresh",
        "/static/js/app.{}.js",
        "/api/v1/payments/{}/capture",
        "/api/v2/search",
    ];
    const STATUS: [&str; 7] = ["200", "200", "200", "201", "304", "404", "503"];
    const MSGS: [&str; 6] = [
        "request completed",
        "cache miss, loading from db",
        "slow query detected",
        "retrying upstream call",
        "connection reset by peer",
        "user session validated",
    ];
    let mut out = Vec::with_capacity(len + 256);
    let mut ms: u64 = 1_764_000_000_000 + rng.below(1_000_000);
    while out.len() < len {
        ms += rng.below(40);
        let (secs, milli) = (ms / 1000, ms % 1000);
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let path = rng
            .pick(&PATHS)
            .replace("{}", &rng.below(1_000_000).to_string());
        let line = format!(
            "2026-11-25T{h:02}:{m:02}:{s:02}.{milli:03}Z {} [worker-{}] {} {} {} {}.{}ms req_id={:016x} user={} msg=\"{}\"\n",
            rng.pick(&LEVELS),
            rng.below(16),
            rng.pick(&METHODS),
            path,
            rng.pick(&STATUS),
            rng.below(900),
            rng.below(10),
            rng.next_u64(),
            rng.below(50_000),
            rng.pick(&MSGS),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_is_deterministic_and_not_stuck() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut z = XorShift64::new(0);
        assert_ne!(z.next_u64(), 0);
    }

    #[test]
    fn consecutive_messages_do_not_overlap_and_have_the_right_size() {
        let p = PayloadPool::new(Payload::Random, 1024, 1 << 20, 7);
        assert_eq!(p.message(0).len(), 1024);
        assert_ne!(p.message(0), p.message(1));
        assert_eq!(p.message(0), p.message(p.windows()));
    }

    #[test]
    fn text_is_printable_log_lines() {
        let mut rng = XorShift64::new(1);
        let t = text_lines(&mut rng, 64 * 1024);
        assert_eq!(t.len(), 64 * 1024);
        let s = std::str::from_utf8(&t).unwrap();
        assert!(s.lines().count() > 100);
        assert!(s.starts_with("2026-11-25T"));
        assert!(s.contains("req_id="));
    }
}
