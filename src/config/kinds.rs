//! What a key's value is: how its properties text parses, which values are valid, and how a
//! value prints as properties text (the documented default). One [`Kind`] per type of key, as
//! Java's `ConfigDef.Type` with its `Validator`; the key table (`keys.rs`) names one per key.

use super::{invalid, unsupported, Acks, ConfigError};
use crate::protocol::record_batch::Compression;
use std::ops::RangeInclusive;
use std::time::Duration;

/// A type of configuration value.
pub(super) trait Kind {
    type Value;

    /// The value of properties text `v` (already trimmed), checked.
    fn parse(&self, key: &str, v: &str) -> Result<Self::Value, ConfigError>;

    /// Whether a value set by a typed setter is valid (a parsed one already is).
    fn check(&self, _key: &str, _v: &Self::Value) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The value as properties text (parses back to the same value).
    fn show(&self, v: &Self::Value) -> String;
}

/// Milliseconds as a [`Duration`], in `min..=max` ms (Java's `int` or `long` bound).
pub(super) struct Ms {
    pub(super) min: u64,
    pub(super) max: u64,
}

impl Ms {
    fn out_of_range(&self, key: &str, v: impl std::fmt::Display) -> ConfigError {
        if self.min == 0 {
            invalid(key, v, format!("milliseconds must be in 0..={}", self.max))
        } else {
            invalid(key, v, format!("must be at least {}", self.min))
        }
    }
}

impl Kind for Ms {
    type Value = Duration;

    fn parse(&self, key: &str, v: &str) -> Result<Duration, ConfigError> {
        let n: i128 = v
            .parse()
            .map_err(|_| invalid(key, v, "expected an integer number of milliseconds"))?;
        if n < i128::from(self.min) || n > i128::from(self.max) {
            return Err(self.out_of_range(key, v));
        }
        Ok(Duration::from_millis(n as u64))
    }

    fn check(&self, key: &str, d: &Duration) -> Result<(), ConfigError> {
        let ms = d.as_millis();
        if ms < u128::from(self.min) || ms > u128::from(self.max) {
            return Err(self.out_of_range(key, ms));
        }
        Ok(())
    }

    fn show(&self, d: &Duration) -> String {
        d.as_millis().to_string()
    }
}

/// An integer count in `min..=max`, held as `T` (`usize`, `u32`).
pub(super) struct Count<T> {
    pub(super) min: u64,
    pub(super) max: u64,
    pub(super) of: std::marker::PhantomData<T>,
}

/// A count in `min..=max`.
pub(super) const fn count<T>(min: u64, max: u64) -> Count<T> {
    Count {
        min,
        max,
        of: std::marker::PhantomData,
    }
}

impl<T> Kind for Count<T>
where
    T: TryFrom<u64> + TryInto<u64> + Copy + ToString,
{
    type Value = T;

    fn parse(&self, key: &str, v: &str) -> Result<T, ConfigError> {
        let n: i128 = v
            .parse()
            .map_err(|_| invalid(key, v, "expected an integer"))?;
        if n < i128::from(self.min) || n > i128::from(self.max) {
            return Err(invalid(
                key,
                v,
                format!("must be in {}..={}", self.min, self.max),
            ));
        }
        T::try_from(n as u64).map_err(|_| invalid(key, v, "too large for this platform"))
    }

    fn check(&self, key: &str, v: &T) -> Result<(), ConfigError> {
        let n: u64 = (*v).try_into().unwrap_or(u64::MAX);
        if n < self.min || n > self.max {
            return Err(invalid(
                key,
                n,
                format!("must be in {}..={}", self.min, self.max),
            ));
        }
        Ok(())
    }

    fn show(&self, v: &T) -> String {
        v.to_string()
    }
}

/// `true` or `false`, in any case.
pub(super) struct Flag;

impl Kind for Flag {
    type Value = bool;

    fn parse(&self, key: &str, v: &str) -> Result<bool, ConfigError> {
        if v.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(invalid(key, v, "expected true or false"))
        }
    }

    fn show(&self, v: &bool) -> String {
        v.to_string()
    }
}

/// One of two names for a `bool` (`metadata.recovery.strategy`: `rebootstrap` / `none`), in
/// any case.
pub(super) struct Choice {
    pub(super) yes: &'static str,
    pub(super) no: &'static str,
}

impl Kind for Choice {
    type Value = bool;

    fn parse(&self, key: &str, v: &str) -> Result<bool, ConfigError> {
        if v.eq_ignore_ascii_case(self.yes) {
            Ok(true)
        } else if v.eq_ignore_ascii_case(self.no) {
            Ok(false)
        } else {
            Err(invalid(
                key,
                v,
                format!("expected {} or {}", self.yes, self.no),
            ))
        }
    }

    fn show(&self, v: &bool) -> String {
        (if *v { self.yes } else { self.no }).to_string()
    }
}

/// Any text.
pub(super) struct Text;

impl Kind for Text {
    type Value = String;

    fn parse(&self, _key: &str, v: &str) -> Result<String, ConfigError> {
        Ok(v.to_string())
    }

    fn show(&self, v: &String) -> String {
        v.clone()
    }
}

/// Text that may be unset: empty is `None` (Java's `null` default).
pub(super) struct OptText;

impl Kind for OptText {
    type Value = Option<String>;

    fn parse(&self, _key: &str, v: &str) -> Result<Option<String>, ConfigError> {
        Ok((!v.is_empty()).then(|| v.to_string()))
    }

    fn show(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }
}

/// A compression level: a Java `int` in `levels`, or `also` (gzip's -1, the codec default).
pub(super) struct Level {
    pub(super) levels: RangeInclusive<i32>,
    pub(super) also: Option<i32>,
}

impl Level {
    fn check_level(&self, key: &str, level: i32) -> Result<i32, ConfigError> {
        if self.levels.contains(&level) || self.also == Some(level) {
            return Ok(level);
        }
        let range = format!("{}..={}", self.levels.start(), self.levels.end());
        Err(invalid(
            key,
            level,
            match self.also {
                Some(also) => format!("expected {also} (default) or {range}"),
                None => format!("expected {range}"),
            },
        ))
    }
}

impl Kind for Level {
    type Value = i32;

    fn parse(&self, key: &str, v: &str) -> Result<i32, ConfigError> {
        let level = v
            .parse::<i32>()
            .map_err(|_| invalid(key, v, "expected an integer"))?;
        self.check_level(key, level)
    }

    fn check(&self, key: &str, v: &i32) -> Result<(), ConfigError> {
        self.check_level(key, *v).map(|_| ())
    }

    fn show(&self, v: &i32) -> String {
        v.to_string()
    }
}

/// `acks`: `all` (any case), `-1`, `0` or `1`.
pub(super) struct AcksKind;

impl Kind for AcksKind {
    type Value = Acks;

    fn parse(&self, _key: &str, v: &str) -> Result<Acks, ConfigError> {
        v.parse()
    }

    fn show(&self, v: &Acks) -> String {
        v.to_string()
    }
}

/// `compression.type`: `none`, `gzip`, `snappy`, `lz4` or `zstd` in any case, of the codecs
/// this build has.
pub(super) struct CompressionKind;

impl Kind for CompressionKind {
    type Value = Compression;

    fn parse(&self, key: &str, v: &str) -> Result<Compression, ConfigError> {
        let c = match v.to_ascii_lowercase().as_str() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => {
                return Err(invalid(
                    key,
                    v,
                    "expected one of none, gzip, snappy, lz4, zstd",
                ))
            }
        };
        let compiled = match c {
            Compression::None => true,
            Compression::Gzip => cfg!(feature = "gzip"),
            Compression::Snappy => cfg!(feature = "snappy"),
            Compression::Lz4 => cfg!(feature = "lz4"),
            Compression::Zstd => cfg!(feature = "zstd"),
        };
        if !compiled {
            return Err(unsupported(
                key,
                v,
                format!("built without the `{}` cargo feature", c.name()),
            ));
        }
        Ok(c)
    }

    fn show(&self, v: &Compression) -> String {
        v.name().to_string()
    }
}

/// `bootstrap.servers`: comma-separated `host:port` (IPv6 hosts in brackets, `[::1]:9092`),
/// port 1..=65535; empty entries dropped. Required: an empty list fails `build` (a rule).
pub(super) struct Servers;

impl Kind for Servers {
    type Value = Vec<String>;

    fn parse(&self, key: &str, v: &str) -> Result<Vec<String>, ConfigError> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| check_server(key, s).map(|()| s.to_string()))
            .collect()
    }

    fn check(&self, key: &str, v: &Vec<String>) -> Result<(), ConfigError> {
        v.iter().try_for_each(|s| check_server(key, s))
    }

    fn show(&self, v: &Vec<String>) -> String {
        v.join(",")
    }
}

fn check_server(key: &str, s: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| invalid(key, s, reason);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() || host == "[]" || host.chars().any(char::is_whitespace) {
        return Err(bad("expected host:port with a non-empty host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("expected host:port with a port in 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind: what parses, what it prints back, what is refused (a validation table).
    #[test]
    fn kinds_parse_check_and_print_back() {
        let ms = Ms { min: 0, max: 10 };
        assert_eq!(ms.parse("k", "10"), Ok(Duration::from_millis(10)));
        assert!(ms.parse("k", "11").is_err());
        assert!(ms.parse("k", "-1").is_err());
        assert!(ms.parse("k", "1.5").is_err());
        assert!(ms.check("k", &Duration::from_millis(11)).is_err());
        assert_eq!(ms.show(&Duration::from_millis(7)), "7");
        let at_least = Ms { min: 5, max: 10 };
        assert!(at_least.parse("k", "4").is_err());
        assert!(at_least.check("k", &Duration::from_millis(4)).is_err());
        assert!(at_least.check("k", &Duration::from_millis(5)).is_ok());

        let c = count::<usize>(1, 3);
        assert_eq!(c.parse("k", "3"), Ok(3));
        assert!(c.parse("k", "0").is_err());
        assert!(c.parse("k", "4").is_err());
        assert!(c.check("k", &0).is_err());
        assert!(c.check("k", &1).is_ok());
        let r = count::<u32>(0, u64::from(u32::MAX));
        assert_eq!(r.parse("k", "4294967295"), Ok(u32::MAX));

        assert_eq!(Flag.parse("k", "TRUE"), Ok(true));
        assert!(Flag.parse("k", "yes").is_err());
        let choice = Choice {
            yes: "rebootstrap",
            no: "none",
        };
        assert_eq!(choice.parse("k", "NONE"), Ok(false));
        assert_eq!(choice.show(&true), "rebootstrap");
        assert!(choice.parse("k", "x").is_err());

        assert_eq!(OptText.parse("k", ""), Ok(None));
        assert_eq!(OptText.show(&Some("t".into())), "t");

        let gzip = Level {
            levels: 1..=9,
            also: Some(-1),
        };
        assert_eq!(gzip.parse("k", "-1"), Ok(-1));
        assert!(gzip.parse("k", "0").is_err());
        assert!(gzip.check("k", &10).is_err());

        assert_eq!(
            Servers.parse("k", " a:1, ,b:2 "),
            Ok(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(Servers.parse("k", ""), Ok(vec![]));
        for bad in ["a", "a:0", ":1", "[]:1", "a b:1", "a:x"] {
            assert!(Servers.parse("k", bad).is_err(), "{bad}");
        }
        assert_eq!(Servers.show(&vec!["a:1".into(), "b:2".into()]), "a:1,b:2");
    }
}
