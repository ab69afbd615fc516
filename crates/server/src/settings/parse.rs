//! The kinds of value a key can hold: each is a parser and the text saying what it allows, kept
//! together so the message of a bad value always describes the parser that refused it.

use std::time::Duration;

use cogvisor_supervisor::{BudgetConfig, HookPolicy, OnFailure};

/// How one kind of value is read from text, and what it allows (for errors, `--help` and the docs).
pub struct Kind<T> {
    pub parse: fn(&str) -> Option<T>,
    pub allowed: &'static str,
}

pub const DURATION: Kind<Duration> = Kind {
    parse: parse_duration,
    allowed: "a duration such as 500ms, 5s or 2m (a bare number is seconds)",
};

pub const NONZERO_DURATION: Kind<Duration> = Kind {
    parse: |s| parse_duration(s).filter(|d| !d.is_zero()),
    allowed: "a duration such as 500ms, 5s or 2m, more than 0",
};

pub const OPT_DURATION: Kind<Option<Duration>> = Kind {
    parse: |s| optional(s, parse_duration),
    allowed: "a duration such as 500ms, 5s or 2m, or none",
};

/// The bound against `health.timeout` is checked once both are known ([`super::Settings`]).
pub const HEALTH_PERIOD: Kind<Option<Duration>> = Kind {
    parse: |s| {
        optional(s, |s| {
            parse_duration(s).filter(|d| *d >= Duration::from_secs(1))
        })
    },
    allowed: "a duration of at least 1s and more than health.timeout, or off",
};

/// The bound against `health.heartbeat_interval` is checked once both are known
/// ([`super::Settings`]).
pub const HEARTBEAT_TIMEOUT: Kind<Option<Duration>> = Kind {
    parse: |s| optional(s, |s| parse_duration(s).filter(|d| !d.is_zero())),
    allowed: "a duration more than health.heartbeat_interval, or off",
};

pub const SLOTS: Kind<u32> = Kind {
    parse: at_least_one,
    allowed: "a whole number of slots, at least 1",
};

pub const THRESHOLD: Kind<u32> = Kind {
    parse: at_least_one,
    allowed: "a whole number, at least 1",
};

pub const OPT_COUNT: Kind<Option<u64>> = Kind {
    parse: |s| optional(s, |s| s.parse::<u64>().ok().filter(|n| *n >= 1)),
    allowed: "a whole number, at least 1, or off",
};

pub const BOOL: Kind<bool> = Kind {
    parse: |s| match s {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    },
    allowed: "true or false (on/off, yes/no)",
};

pub const COUNT: Kind<u64> = Kind {
    parse: |s| s.parse().ok(),
    allowed: "a whole number",
};

pub const COMMAND: Kind<Option<Vec<String>>> = Kind {
    parse: |s| optional(s, |s| shlex::split(s).filter(|argv| !argv.is_empty())),
    allowed: "a command line (split like a shell would, no shell is run), or none",
};

pub const ON_FAILURE: Kind<OnFailure> = Kind {
    parse: |s| match s {
        "log" => Some(OnFailure::Log),
        "recycle" => Some(OnFailure::Recycle),
        "exit" => Some(OnFailure::Exit),
        _ => None,
    },
    allowed: "log, recycle or exit",
};

pub const HOOK_POLICY: Kind<HookPolicy> = Kind {
    parse: |s| match s {
        "warn" => Some(HookPolicy::Warn),
        "fail" => Some(HookPolicy::Fail),
        _ => None,
    },
    allowed: "warn or fail",
};

/// `N in DURATION`; the backoff is not a setting and keeps the supervisor's.
pub const BUDGET: Kind<BudgetConfig> = Kind {
    parse: |s| {
        let (n, window) = s.split_once(" in ")?;
        Some(BudgetConfig {
            max: n.trim().parse().ok()?,
            window: parse_duration(window.trim()).filter(|d| !d.is_zero())?,
            ..BudgetConfig::default()
        })
    },
    allowed: "N in DURATION, such as 5 in 300s",
};

pub const LOG_SIZE: Kind<usize> = Kind {
    parse: |s| parse_size(s).filter(|n| *n >= 1024),
    allowed: "a size such as 8MiB, 512KiB or a number of bytes, at least 1KiB",
};

pub const CONNECTIONS: Kind<u32> = Kind {
    parse: at_least_one,
    allowed: "a whole number of connections, at least 1",
};

pub const BODY_BUDGET: Kind<usize> = Kind {
    parse: |s| parse_size(s).filter(|n| *n >= 1 << 20),
    allowed: "a size such as 128MiB, 1GiB or a number of bytes, at least 1MiB",
};

pub const FILE_SIZE: Kind<u64> = Kind {
    parse: |s| parse_size(s).filter(|n| *n >= 1024).map(|n| n as u64),
    allowed: "a size such as 100MiB, 1GiB or a number of bytes, at least 1KiB",
};

/// A memory bound, off by default. At least 1 MiB: a bare `400` is 400 bytes, which no worker fits in,
/// and is more likely a missing unit than a bound.
pub const OPT_MEMORY: Kind<Option<u64>> = Kind {
    parse: |s| {
        optional(s, |s| {
            parse_size(s).filter(|n| *n >= 1 << 20).map(|n| n as u64)
        })
    },
    allowed:
        "a size such as 400MB, 400MiB, 1GB or 1GiB, or a number of bytes, at least 1MiB; or off",
};

/// How often the memory bounds are checked.
pub const MEMORY_CHECK_INTERVAL: Kind<Duration> = Kind {
    parse: |s| parse_duration(s).filter(|d| *d >= Duration::from_millis(100)),
    allowed: "a duration of at least 100ms, such as 500ms or 1s",
};

/// The most workers a pool may have.
pub const MAX_WORKERS: u32 = 64;

pub const WORKERS: Kind<u32> = Kind {
    parse: |s| {
        s.parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_WORKERS).contains(n))
    },
    allowed: "a whole number of workers, 1 to 64",
};

/// `workers.devices`: a comma-separated list of device names (`0,1` or `GPU-uuid,...`).
pub const DEVICES: Kind<Option<Vec<String>>> = Kind {
    parse: |s| optional(s, parse_devices),
    allowed: "a comma-separated list of devices such as 0,1 (no spaces inside a name), or none",
};

fn parse_devices(s: &str) -> Option<Vec<String>> {
    let devices: Vec<String> = s.split(',').map(|d| d.trim().to_owned()).collect();
    let valid = devices
        .iter()
        .all(|d| !d.is_empty() && !d.contains(char::is_whitespace));
    valid.then_some(devices)
}

/// Variables the worker must never be given through `workers.env`: secrets the server keeps from
/// model code (docs/limits.md).
pub const SECRET_NAMES: &[&str] = &["COGVISOR_ADMIN_TOKEN", "WEBHOOK_AUTH_TOKEN"];

/// `workers.env`: space-separated `NAME=VALUE` pairs, `{index}` and `{device}` substituted per worker.
pub const WORKER_ENV: Kind<Vec<(String, String)>> = Kind {
    parse: |s| optional(s, parse_worker_env).map(Option::unwrap_or_default),
    allowed: "space-separated NAME=VALUE pairs (VALUE may use {index} and {device}; not COGVISOR_ADMIN_TOKEN or WEBHOOK_AUTH_TOKEN), or none",
};

fn parse_worker_env(s: &str) -> Option<Vec<(String, String)>> {
    s.split_whitespace()
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let mut chars = name.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            (first_ok && rest_ok && !SECRET_NAMES.contains(&name))
                .then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn at_least_one(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| *n >= 1)
}

/// `off`, `none` or nothing is unset; anything else must parse.
fn optional<T>(s: &str, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    if matches!(s, "off" | "none" | "") {
        Some(None)
    } else {
        parse(s).map(Some)
    }
}

/// `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let number: f64 = number.trim().parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// `8MiB`, `512KiB`, `1GiB`, `100kB`, or bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "B"),
    };
    let number: u64 = number.trim().parse().ok()?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    usize::try_from(number.checked_mul(factor)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1 lots"), None);
    }

    #[test]
    fn memory_bounds_read_decimal_and_binary_units_and_bytes() {
        let parse = OPT_MEMORY.parse;
        assert_eq!(parse("400MB"), Some(Some(400_000_000)));
        assert_eq!(parse("400MiB"), Some(Some(400 << 20)));
        assert_eq!(parse("1GB"), Some(Some(1_000_000_000)));
        assert_eq!(parse("2GiB"), Some(Some(2 << 30)));
        assert_eq!(parse("400 MB"), Some(Some(400_000_000)));
        assert_eq!(parse("419430400"), Some(Some(419_430_400)));
        assert_eq!(parse("off"), Some(None));
        for bad in [
            "400mb",
            "400",
            "1.5GB",
            "-1GB",
            "lots",
            "400 MB of it",
            "1TB",
            "0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            (MEMORY_CHECK_INTERVAL.parse)("250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!((MEMORY_CHECK_INTERVAL.parse)("50ms"), None);
    }

    #[test]
    fn optional_kinds_read_off_and_none_as_unset() {
        for off in ["off", "none", ""] {
            assert_eq!((OPT_DURATION.parse)(off), Some(None));
            assert_eq!((OPT_COUNT.parse)(off), Some(None));
            assert_eq!((COMMAND.parse)(off), Some(None));
        }
        assert_eq!((HEALTH_PERIOD.parse)("500ms"), None);
        assert_eq!((OPT_COUNT.parse)("0"), None);
        assert_eq!((NONZERO_DURATION.parse)("0s"), None);
    }
}
