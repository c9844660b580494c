//! Time conditions of rules (`rule.time`): windows by time of day, day of week and date, in
//! a named time zone, evaluated against the time the core passes in
//! ([`RouteInput::now_unix_ms`](crate::RouteInput::now_unix_ms)).
//!
//! Local times come from the IANA time zone database bundled with `jiff` (no file is read at
//! run time, so every machine decides alike). Daylight-saving changes are handled by
//! converting the instant to local wall-clock time: on the day clocks go forward a window
//! over the skipped hour never holds, on the day they go back a window over the repeated
//! hour holds twice.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::TimeWindowConfig;
use crate::error::{BuildError, KeyPath};

/// Seconds in a day.
const DAY: u32 = 86_400;

/// A compiled time window.
#[derive(Clone)]
pub struct TimeWindow {
    zone_name: Box<str>,
    tz: TimeZone,
    /// Bit `d` set: weekday `d` (Monday 0) is in. All bits when `days` is absent.
    days: u8,
    /// Seconds of the local day: `[from, to)`; `from > to` crosses midnight.
    from: u32,
    to: u32,
    dates: Box<[DateRange]>,
    invert: bool,
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindow")
            .field("zone", &self.zone_name)
            .field("days", &format_args!("{:07b}", self.days))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("dates", &self.dates)
            .field("invert", &self.invert)
            .finish()
    }
}

/// A date or an inclusive date range, absolute (`YYYYMMDD` numbers) or yearly (`MMDD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateRange {
    Absolute(u32, u32),
    /// Start and end as `MMDD`; start > end wraps over the new year.
    Yearly(u32, u32),
}

impl DateRange {
    fn contains(self, d: Date) -> bool {
        let md = d.month() as u32 * 100 + d.day() as u32;
        match self {
            DateRange::Absolute(a, b) => {
                let ymd = i64::from(d.year()) * 10_000 + i64::from(md);
                (i64::from(a)..=i64::from(b)).contains(&ymd)
            }
            DateRange::Yearly(a, b) if a <= b => (a..=b).contains(&md),
            DateRange::Yearly(a, b) => md >= a || md <= b,
        }
    }
}

impl TimeWindow {
    /// Check and compile one window; errors name the key under `path`.
    pub(crate) fn build(cfg: &TimeWindowConfig, path: &KeyPath) -> Result<TimeWindow, BuildError> {
        let zone_name = cfg.zone.as_deref().unwrap_or("UTC");
        let tz = TimeZone::get(zone_name).map_err(|_| {
            BuildError::new(
                path.key("zone"),
                format!("unknown time zone \"{zone_name}\": use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
            )
        })?;
        let days = match &cfg.days {
            None => 0x7f,
            Some(list) => {
                let p = path.key("days");
                if list.0.is_empty() {
                    return Err(BuildError::new(
                        p,
                        "empty list matches no day: remove the key to match every day",
                    ));
                }
                let mut bits = 0u8;
                for (k, s) in list.0.iter().enumerate() {
                    bits |= parse_days(s).map_err(|m| BuildError::new(p.index(k), m))?;
                }
                bits
            }
        };
        let from = match &cfg.from {
            None => 0,
            Some(s) => parse_clock(s, false).map_err(|m| BuildError::new(path.key("from"), m))?,
        };
        let to = match &cfg.to {
            None => DAY,
            Some(s) => parse_clock(s, true).map_err(|m| BuildError::new(path.key("to"), m))?,
        };
        if to == 0 {
            return Err(BuildError::new(
                path.key("to"),
                "\"00:00\" as the end: write \"24:00\" for the end of the day",
            ));
        }
        if from == to {
            return Err(BuildError::new(
                path.key("to"),
                "from and to are equal: the window would be empty or the whole day; leave both out for the whole day",
            ));
        }
        let dates = match &cfg.dates {
            None => Box::default(),
            Some(list) => {
                let p = path.key("dates");
                if list.0.is_empty() {
                    return Err(BuildError::new(
                        p,
                        "empty list matches no date: remove the key to match every date",
                    ));
                }
                list.0
                    .iter()
                    .enumerate()
                    .map(|(k, s)| parse_date_range(s).map_err(|m| BuildError::new(p.index(k), m)))
                    .collect::<Result<Box<[DateRange]>, BuildError>>()?
            }
        };
        Ok(TimeWindow {
            zone_name: zone_name.into(),
            tz,
            days,
            from,
            to,
            dates,
            invert: cfg.invert,
        })
    }

    /// The zone's name as configured.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// Whether the window holds at this instant (milliseconds since the UNIX epoch).
    pub fn holds(&self, now_unix_ms: u64) -> bool {
        self.inside(now_unix_ms) != self.invert
    }

    fn inside(&self, now_unix_ms: u64) -> bool {
        let ms = i64::try_from(now_unix_ms).unwrap_or(i64::MAX);
        let ts = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX);
        let local = self.tz.to_datetime(ts);
        let date = local.date();
        let t = local.time();
        let secs = t.hour() as u32 * 3600 + t.minute() as u32 * 60 + t.second() as u32;
        if self.from < self.to {
            self.from <= secs && secs < self.to && self.day_ok(date)
        } else if secs >= self.from {
            // Crossing midnight, before it: the window started today.
            self.day_ok(date)
        } else if secs < self.to {
            // After midnight: the window started yesterday.
            date.yesterday().is_ok_and(|y| self.day_ok(y))
        } else {
            false
        }
    }

    fn day_ok(&self, d: Date) -> bool {
        let wd = d.weekday().to_monday_zero_offset() as u8;
        self.days & (1 << wd) != 0
            && (self.dates.is_empty() || self.dates.iter().any(|r| r.contains(d)))
    }
}

/// A list of windows: holds when any holds.
pub(crate) fn any_holds(windows: &[TimeWindow], now_unix_ms: u64) -> bool {
    windows.iter().any(|w| w.holds(now_unix_ms))
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

fn parse_day(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|(short, long)| s == *short || s == *long)
        .map(|i| i as u8)
}

/// `"mon"`, `"monday"` or a range `"mon..fri"` (wrapping: `"fri..mon"`), as a bit set.
fn parse_days(s: &str) -> Result<u8, String> {
    let bad = || {
        format!("\"{s}\" is not a day (mon, tue, wed, thu, fri, sat, sun) or a range of days (\"mon..fri\")")
    };
    match s.split_once("..") {
        None => parse_day(s).map(|d| 1 << d).ok_or_else(bad),
        Some((a, b)) => {
            let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
            let mut bits = 0u8;
            let mut d = a;
            loop {
                bits |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Ok(bits)
        }
    }
}

/// `"HH:MM"` or `"HH:MM:SS"` as seconds of the day; `"24:00"` only when `end`.
fn parse_clock(s: &str, end: bool) -> Result<u32, String> {
    let bad = || {
        format!("\"{s}\" is not a time of day: expected \"HH:MM\" or \"HH:MM:SS\" (00:00 to 23:59:59{})", if end { ", or 24:00" } else { "" })
    };
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    if h == 24 && m == 0 && sec == 0 && end {
        return Ok(DAY);
    }
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60 + sec)
}

/// `YYYY-MM-DD` (absolute) or `MM-DD` (yearly) as (kind, number).
fn parse_date(s: &str) -> Result<(bool, u32), String> {
    let bad =
        || format!("\"{s}\" is not a date: expected \"YYYY-MM-DD\" or, every year, \"MM-DD\"");
    let s = s.trim();
    let parts: Vec<&str> = s.split('-').collect();
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    let (year, month, day) = match parts.as_slice() {
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => {
            (Some(y.parse::<i16>().map_err(|_| bad())?), m, d)
        }
        [m, d] if digits(m, 2) && digits(d, 2) => (None, m, d),
        _ => return Err(bad()),
    };
    let month: i8 = month.parse().map_err(|_| bad())?;
    let day: i8 = day.parse().map_err(|_| bad())?;
    // A yearly date is checked against a leap year, so "02-29" is accepted.
    Date::new(year.unwrap_or(2000), month, day).map_err(|_| format!("\"{s}\": no such date"))?;
    let md = month as u32 * 100 + day as u32;
    Ok(match year {
        Some(y) => (true, y as u32 * 10_000 + md),
        None => (false, md),
    })
}

fn parse_date_range(s: &str) -> Result<DateRange, String> {
    match s.split_once("..") {
        None => {
            let (abs, n) = parse_date(s)?;
            Ok(if abs {
                DateRange::Absolute(n, n)
            } else {
                DateRange::Yearly(n, n)
            })
        }
        Some((a, b)) => {
            let (a_abs, a) = parse_date(a)?;
            let (b_abs, b) = parse_date(b)?;
            match (a_abs, b_abs) {
                (true, true) if a <= b => Ok(DateRange::Absolute(a, b)),
                (true, true) => Err(format!("\"{s}\": the range ends before it starts")),
                (false, false) => Ok(DateRange::Yearly(a, b)),
                _ => Err(format!(
                    "\"{s}\": write both ends with a year (\"2026-12-24..2027-01-06\") or both without (\"12-24..01-06\")"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringList;

    fn window(f: impl FnOnce(&mut TimeWindowConfig)) -> TimeWindow {
        let mut c = TimeWindowConfig::default();
        f(&mut c);
        TimeWindow::build(&c, &KeyPath::root("w")).unwrap()
    }

    fn err(f: impl FnOnce(&mut TimeWindowConfig)) -> String {
        let mut c = TimeWindowConfig::default();
        f(&mut c);
        TimeWindow::build(&c, &KeyPath::root("w"))
            .unwrap_err()
            .to_string()
    }

    fn list(items: &[&str]) -> Option<StringList> {
        Some(items.iter().copied().collect())
    }

    /// Milliseconds of an instant written in RFC 3339 (with offset).
    fn at(s: &str) -> u64 {
        let ts: Timestamp = s.parse().unwrap();
        ts.as_millisecond() as u64
    }

    #[test]
    fn office_hours_in_utc() {
        let w = window(|c| {
            c.days = list(&["mon..fri"]);
            c.from = Some("08:00".into());
            c.to = Some("18:00".into());
        });
        // 2026-11-02 is a Monday.
        assert!(w.holds(at("2026-11-02T08:00:00Z")));
        assert!(w.holds(at("2026-11-02T17:59:59Z")));
        assert!(!w.holds(at("2026-11-02T18:00:00Z")), "to is exclusive");
        assert!(!w.holds(at("2026-11-02T07:59:59Z")));
        assert!(w.holds(at("2026-11-06T12:00:00Z")), "friday");
        assert!(!w.holds(at("2026-11-07T12:00:00Z")), "saturday");
        assert!(!w.holds(at("2026-11-08T12:00:00Z")), "sunday");
    }

    #[test]
    fn across_midnight() {
        let w = window(|c| {
            c.from = Some("22:00".into());
            c.to = Some("06:00".into());
        });
        for (t, want) in [
            ("2026-11-02T21:59:59Z", false),
            ("2026-11-02T22:00:00Z", true),
            ("2026-11-02T23:59:59Z", true),
            ("2026-11-03T00:00:00Z", true),
            ("2026-11-03T05:59:59Z", true),
            ("2026-11-03T06:00:00Z", false),
            ("2026-11-03T12:00:00Z", false),
        ] {
            assert_eq!(w.holds(at(t)), want, "{t}");
        }
        // With days: the hours after midnight belong to the day the window started.
        let fri_night = window(|c| {
            c.days = list(&["fri"]);
            c.from = Some("22:00".into());
            c.to = Some("06:00".into());
        });
        assert!(fri_night.holds(at("2026-11-06T23:00:00Z")), "friday 23:00");
        assert!(
            fri_night.holds(at("2026-11-07T03:00:00Z")),
            "saturday 03:00"
        );
        assert!(
            !fri_night.holds(at("2026-11-06T03:00:00Z")),
            "friday 03:00 is thursday's night"
        );
        assert!(
            !fri_night.holds(at("2026-11-07T23:00:00Z")),
            "saturday 23:00"
        );
        // Only `from`: until midnight; only `to`: from midnight.
        let evening = window(|c| c.from = Some("20:00".into()));
        assert!(evening.holds(at("2026-11-02T23:59:59Z")));
        assert!(!evening.holds(at("2026-11-03T00:00:00Z")));
        let morning = window(|c| c.to = Some("09:30".into()));
        assert!(morning.holds(at("2026-11-03T00:00:00Z")));
        assert!(!morning.holds(at("2026-11-03T09:30:00Z")));
        let to_midnight = window(|c| {
            c.from = Some("12:00".into());
            c.to = Some("24:00".into());
        });
        assert!(to_midnight.holds(at("2026-11-03T23:59:59Z")));
        assert!(!to_midnight.holds(at("2026-11-04T00:00:00Z")));
    }

    #[test]
    fn named_zone_and_dst_spring_forward() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        let office = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.from = Some("08:00".into());
            c.to = Some("18:00".into());
        });
        // Saturday before: CET (UTC+1), 08:00 local = 07:00 UTC.
        assert!(!office.holds(at("2026-03-28T06:59:59Z")));
        assert!(office.holds(at("2026-03-28T07:00:00Z")));
        assert!(office.holds(at("2026-03-28T16:59:59Z")));
        assert!(!office.holds(at("2026-03-28T17:00:00Z")));
        // Sunday of the change: CEST (UTC+2), 08:00 local = 06:00 UTC.
        assert!(!office.holds(at("2026-03-29T05:59:59Z")));
        assert!(office.holds(at("2026-03-29T06:00:00Z")));
        assert!(office.holds(at("2026-03-29T15:59:59Z")));
        assert!(!office.holds(at("2026-03-29T16:00:00Z")));
        // The skipped hour 02:00-03:00 never occurs that night.
        let skipped = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.from = Some("02:00".into());
            c.to = Some("03:00".into());
            c.dates = list(&["2026-03-29"]);
        });
        let start = at("2026-03-28T23:00:00Z");
        let held = (0..(4 * 3600))
            .filter(|s| skipped.holds(start + s * 1000))
            .count();
        assert_eq!(held, 0);
        // A night window across the change is an hour shorter: 22:00 CET to 06:00 CEST.
        let night = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.days = list(&["sat"]);
            c.from = Some("22:00".into());
            c.to = Some("06:00".into());
        });
        assert!(!night.holds(at("2026-03-28T20:59:59Z")));
        assert!(night.holds(at("2026-03-28T21:00:00Z")));
        assert!(night.holds(at("2026-03-29T03:59:59Z")));
        assert!(!night.holds(at("2026-03-29T04:00:00Z")));
        let minutes = (0..24 * 60)
            .filter(|m| night.holds(at("2026-03-28T12:00:00Z") + m * 60_000))
            .count();
        assert_eq!(minutes, 7 * 60);
    }

    #[test]
    fn dst_fall_back() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
        let office = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.days = list(&["sun"]);
            c.from = Some("08:00".into());
            c.to = Some("18:00".into());
        });
        assert!(!office.holds(at("2026-10-25T06:59:59Z")));
        assert!(office.holds(at("2026-10-25T07:00:00Z")), "08:00 CET");
        assert!(office.holds(at("2026-10-25T16:59:59Z")));
        assert!(!office.holds(at("2026-10-25T17:00:00Z")));
        // The repeated hour 02:00-03:00 holds twice: two real hours.
        let repeated = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.from = Some("02:00".into());
            c.to = Some("03:00".into());
            c.dates = list(&["2026-10-25"]);
        });
        let start = at("2026-10-24T22:00:00Z");
        let minutes = (0..6 * 60)
            .filter(|m| repeated.holds(start + m * 60_000))
            .count();
        assert_eq!(minutes, 120);
        assert!(repeated.holds(at("2026-10-25T00:30:00Z")), "02:30 CEST");
        assert!(repeated.holds(at("2026-10-25T01:30:00Z")), "02:30 CET");
        assert!(!repeated.holds(at("2026-10-25T02:00:00Z")), "03:00 CET");
        // Night window across the change is an hour longer: 22:00 CEST to 06:00 CET.
        let night = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.from = Some("22:00".into());
            c.to = Some("06:00".into());
            c.dates = list(&["2026-10-24"]);
        });
        let minutes = (0..24 * 60)
            .filter(|m| night.holds(at("2026-10-24T12:00:00Z") + m * 60_000))
            .count();
        assert_eq!(minutes, 9 * 60);
        assert!(night.holds(at("2026-10-24T20:00:00Z")), "22:00 CEST");
        assert!(night.holds(at("2026-10-25T04:59:59Z")), "05:59:59 CET");
        assert!(!night.holds(at("2026-10-25T05:00:00Z")), "06:00 CET");
    }

    #[test]
    fn other_zones() {
        // New York: EDT (UTC-4) until 2026-11-01 06:00 UTC, then EST (UTC-5).
        let w = window(|c| {
            c.zone = Some("America/New_York".into());
            c.from = Some("09:00".into());
            c.to = Some("10:00".into());
        });
        assert!(w.holds(at("2026-10-30T13:30:00Z")));
        assert!(!w.holds(at("2026-11-02T13:30:00Z")));
        assert!(w.holds(at("2026-11-02T14:30:00Z")));
    }

    #[test]
    fn dates_and_invert() {
        let xmas = window(|c| {
            c.zone = Some("Europe/Berlin".into());
            c.dates = list(&["2026-12-24..2026-12-26", "2027-01-01"]);
        });
        assert!(!xmas.holds(at("2026-12-23T22:59:59Z")));
        assert!(
            xmas.holds(at("2026-12-23T23:00:00Z")),
            "00:00 local on the 24th"
        );
        assert!(xmas.holds(at("2026-12-26T22:59:59Z")));
        assert!(!xmas.holds(at("2026-12-26T23:00:00Z")));
        assert!(xmas.holds(at("2027-01-01T12:00:00Z")));
        assert!(
            !xmas.holds(at("2027-12-25T12:00:00Z")),
            "absolute dates are one year"
        );
        let yearly = window(|c| c.dates = list(&["12-24..01-06", "05-01"]));
        assert!(yearly.holds(at("2030-12-31T12:00:00Z")));
        assert!(yearly.holds(at("2031-01-06T12:00:00Z")));
        assert!(!yearly.holds(at("2031-01-07T12:00:00Z")));
        assert!(yearly.holds(at("2031-05-01T12:00:00Z")));
        assert!(!yearly.holds(at("2031-06-01T12:00:00Z")));
        let not_xmas = window(|c| {
            c.dates = list(&["12-24..12-26"]);
            c.invert = true;
        });
        assert!(!not_xmas.holds(at("2026-12-25T12:00:00Z")));
        assert!(not_xmas.holds(at("2026-12-27T12:00:00Z")));
        let weekend = window(|c| c.days = list(&["sat", "Sunday"]));
        assert!(weekend.holds(at("2026-11-07T12:00:00Z")));
        assert!(weekend.holds(at("2026-11-08T12:00:00Z")));
        assert!(!weekend.holds(at("2026-11-09T12:00:00Z")));
        let wrap = window(|c| c.days = list(&["fri..mon"]));
        assert!(wrap.holds(at("2026-11-09T12:00:00Z")), "monday");
        assert!(!wrap.holds(at("2026-11-10T12:00:00Z")), "tuesday");
        // Windows of a list: any.
        let ws = [weekend.clone(), window(|c| c.dates = list(&["2026-11-10"]))];
        assert!(any_holds(&ws, at("2026-11-10T12:00:00Z")));
        assert!(!any_holds(&ws, at("2026-11-11T12:00:00Z")));
        // Far-off or absurd instants do not panic.
        for t in [
            0,
            u64::MAX,
            i64::MAX as u64,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            let _ = any_holds(&ws, t);
            let _ = xmas.holds(t);
        }
    }

    #[test]
    fn errors_name_the_key() {
        for (f, want) in [
            (
                Box::new(|c: &mut TimeWindowConfig| c.zone = Some("Mars/Olympus".into()))
                    as Box<dyn FnOnce(&mut TimeWindowConfig)>,
                "w.zone: unknown time zone \"Mars/Olympus\"",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.days = list(&["mon", "funday"])),
                "w.days[1]: \"funday\" is not a day",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.days = list(&["mon..xyz"])),
                "w.days[0]:",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.days = list(&[])),
                "w.days: empty list",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.from = Some("8:00".into())),
                "w.from: \"8:00\" is not a time of day",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.from = Some("24:00".into())),
                "w.from: \"24:00\" is not a time of day",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.to = Some("12:60".into())),
                "w.to:",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| {
                    c.from = Some("10:00".into());
                    c.to = Some("10:00".into())
                }),
                "w.to: from and to are equal",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.to = Some("00:00".into())),
                "w.to: \"00:00\" as the end: write \"24:00\"",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.dates = list(&["2026-02-30"])),
                "w.dates[0]: \"2026-02-30\": no such date",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.dates = list(&["2026-12-26..2026-12-24"])),
                "ends before it starts",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.dates = list(&["2026-12-24..12-26"])),
                "both ends with a year",
            ),
            (
                Box::new(|c: &mut TimeWindowConfig| c.dates = list(&["24.12.2026"])),
                "is not a date",
            ),
        ] {
            let e = err(f);
            assert!(e.contains(want), "{e} / want {want}");
        }
        // A yearly February 29th is fine.
        window(|c| c.dates = list(&["02-29"]));
    }
}
