//! Human sizes and rates on the command line: `2GiB`, `512MiB`, `1KiB`, `10MB`, `4096`.
//!
//! Binary suffixes (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024; decimal ones (`KB`, `MB`,
//! `GB`, `TB`, also lower-case `k`/`m`/`g`) are powers of 1000, as their SI names say. A plain
//! number (or a `B` suffix) is bytes. Rates (`--rate`) are MB/s with MB = 10^6 bytes, like every
//! throughput the benchmark prints.

/// Parses a byte size. Rejects zero, fractions, negative numbers and unknown suffixes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "bad size {s:?}: expected a whole number with an optional unit (e.g. 4096, 512KiB, 2GiB, 10MB)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad size {s:?}: number too large"))?;
    let mult: u64 = match suffix.trim() {
        "" | "B" | "b" => 1,
        "KiB" | "kib" | "Ki" => 1 << 10,
        "MiB" | "mib" | "Mi" => 1 << 20,
        "GiB" | "gib" | "Gi" => 1 << 30,
        "TiB" | "tib" | "Ti" => 1 << 40,
        "KB" | "kB" | "kb" | "k" | "K" => 1_000,
        "MB" | "mb" | "M" | "m" => 1_000_000,
        "GB" | "gb" | "G" | "g" => 1_000_000_000,
        "TB" | "tb" | "T" | "t" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "bad size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("bad size {s:?}: too large"))?;
    if v == 0 {
        return Err(format!("bad size {s:?}: must be greater than zero"));
    }
    Ok(v)
}

/// Parses a size that must fit in `usize` and in `u32` (message sizes; a record value length is
/// an i32 on the wire).
pub fn parse_message_size(s: &str) -> Result<usize, String> {
    let v = parse_size(s)?;
    if v > i32::MAX as u64 {
        return Err(format!("bad message size {s:?}: at most 2 GiB - 1"));
    }
    usize::try_from(v).map_err(|_| format!("bad message size {s:?}: too large"))
}

/// Parses a rate in MB/s (10^6 bytes per second): a positive decimal number, optionally followed
/// by `MB/s`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("MB/s")
        .or_else(|| t.strip_suffix("mb/s"))
        .unwrap_or(t)
        .trim();
    let v: f64 = t
        .parse()
        .map_err(|_| format!("bad rate {s:?}: expected MB/s as a number, e.g. 100 or 12.5"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("bad rate {s:?}: must be a positive number of MB/s"));
    }
    Ok(v)
}

/// Parses a positive whole number of seconds (`--warmup`); 0 is allowed and means none.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected seconds, e.g. 5 or 2.5"))?;
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        return Err(format!(
            "bad duration {s:?}: must be between 0 and 86400 seconds"
        ));
    }
    Ok(v)
}

/// Formats a byte count with a binary unit, for humans (`1.50 GiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = "B";
    for u in UNITS {
        unit = u;
        if v < 1024.0 {
            break;
        }
        if u != "TiB" {
            v /= 1024.0;
        }
    }
    if unit == "B" {
        format!("{b} B")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Bytes per second to MB/s (10^6 bytes).
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_parse_to_bytes() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("3kB").unwrap(), 3_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size(" 1 GiB ").unwrap(), 1 << 30);
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        for bad in [
            "",
            "GiB",
            "-1",
            "1.5GiB",
            "0",
            "0KiB",
            "12XB",
            "99999999999999999999",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("bad size"), "{bad:?}: {e}");
        }
        assert!(
            parse_size("20000000TiB").is_err(),
            "overflow must be refused"
        );
        assert!(parse_message_size("4GiB").is_err());
        assert_eq!(parse_message_size("16KiB").unwrap(), 16384);
    }

    #[test]
    fn rates_are_positive_mb_per_second() {
        assert!((parse_rate("100").unwrap() - 100.0).abs() < f64::EPSILON);
        assert!((parse_rate("12.5MB/s").unwrap() - 12.5).abs() < f64::EPSILON);
        for bad in ["0", "-3", "fast", "NaN", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seconds_allow_zero_but_not_negative() {
        assert!((parse_seconds("0").unwrap()).abs() < f64::EPSILON);
        assert!((parse_seconds("2.5s").unwrap() - 2.5).abs() < f64::EPSILON);
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(2 << 30), "2.00 GiB");
        assert!((mb_per_s(2_000_000, 2.0) - 1.0).abs() < 1e-9);
    }
}
