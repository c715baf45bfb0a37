//! `actor top`: the live tree, refreshed, with each actor's call rate.
//!
//! Each refresh asks every actor to describe itself (as `ps` does) and
//! divides the growth of the calls it has served by the time between two
//! of its answers. The first rates come one interval after the first
//! survey. Text goes to a terminal as a redrawn screen (ANSI clear, only
//! when stdout is one); `--json` prints one JSON document per line per
//! refresh, for scripts and tests.

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use actor::Uid;
use actor::transport::Escaped;
use serde_json::{Value, json};

use crate::show::{table, uptime};
use crate::survey::{Seen, full, survey};

/// The shortest and longest refresh interval accepted.
const INTERVAL_RANGE: (f64, f64) = (0.05, 3600.0);

/// Parses `--interval`: seconds, possibly fractional, within
/// [`INTERVAL_RANGE`].
pub(crate) fn interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("not a number of seconds: {text:?}"))?;
    let (lo, hi) = INTERVAL_RANGE;
    if !(lo..=hi).contains(&secs) {
        return Err(format!("the interval must be between {lo} and {hi} seconds, not {secs}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One actor's served-calls count, and when it was read.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    served: u64,
}

/// Refreshes `iterations` times (forever if `None`), `every` apart.
///
/// # Errors
///
/// When the registry cannot be asked or stdout is closed.
pub(crate) async fn run(every: Duration, iterations: Option<u64>, as_json: bool) -> actor::Result<()> {
    let clear = !as_json && std::io::stdout().is_terminal();
    let mut before = samples(&survey().await?);
    let mut done = 0;
    while iterations.is_none_or(|n| done < n) {
        tokio::time::sleep(every).await;
        let seen = survey().await?;
        let now = samples(&seen);
        let rates = rates(&before, &now);
        let mut out = if as_json { document(&seen, &rates, every) } else { screen(&seen, &rates, every) };
        if clear {
            out.insert_str(0, "\x1b[2J\x1b[H");
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush())?;
        before = now;
        done += 1;
    }
    Ok(())
}

fn samples(seen: &[Seen]) -> HashMap<Uid, Sample> {
    seen.iter()
        .filter_map(|s| {
            let r = s.report.as_ref().ok()?;
            Some((s.entry.uid.clone(), Sample { at: s.at, served: r.calls_served }))
        })
        .collect()
}

/// Calls per second for each actor seen both times; an actor that
/// restarted (its count went down) has no rate this time.
fn rates(before: &HashMap<Uid, Sample>, now: &HashMap<Uid, Sample>) -> HashMap<Uid, f64> {
    now.iter()
        .filter_map(|(uid, n)| {
            let b = before.get(uid)?;
            let secs = n.at.checked_duration_since(b.at)?.as_secs_f64();
            let grew = n.served.checked_sub(b.served)?;
            (secs > 0.0).then(|| (uid.clone(), grew as f64 / secs))
        })
        .collect()
}

fn document(seen: &[Seen], rates: &HashMap<Uid, f64>, every: Duration) -> String {
    let actors: Vec<Value> = seen
        .iter()
        .map(|s| {
            let mut o = json!({
                "name": s.entry.uid.name,
                "uid": full(&s.entry.uid),
                "calls_per_sec": rates.get(&s.entry.uid),
            });
            match &s.report {
                Ok(r) => {
                    o["pid"] = json!(r.pid);
                    o["host"] = json!(r.host);
                    o["parent"] = json!(r.parent.as_ref().map(full));
                    o["calls_served"] = json!(r.calls_served);
                    o["calls_in_flight"] = json!(r.calls_in_flight);
                    o["children"] = json!(r.children.len());
                    o["uptime_ms"] = json!(crate::show::now_ms().saturating_sub(r.started_at_ms));
                }
                Err(e) => o["error"] = json!(e),
            }
            o
        })
        .collect();
    format!("{}\n", json!({ "interval_ms": every.as_millis() as u64, "actors": actors }))
}

fn screen(seen: &[Seen], rates: &HashMap<Uid, f64>, every: Duration) -> String {
    let now = crate::show::now_ms();
    let mut rows = vec![
        ["NAME", "UID", "PID", "CALLS/S", "SERVED", "IN FLIGHT", "CHILDREN", "UPTIME"].map(String::from),
    ];
    for s in seen {
        let uid = &s.entry.uid;
        let rate = rates.get(uid).map_or("-".into(), |r| format!("{r:.1}"));
        let cells = match &s.report {
            Ok(r) => [
                r.pid.to_string(),
                rate,
                r.calls_served.to_string(),
                r.calls_in_flight.to_string(),
                r.children.len().to_string(),
                uptime(now.saturating_sub(r.started_at_ms)),
            ],
            Err(e) => [Escaped(e).to_string(), rate, "?".into(), "?".into(), "?".into(), "?".into()],
        };
        let [pid, rate, served, flight, kids, up] = cells;
        rows.push([Escaped(&uid.name).to_string(), uid.to_string(), pid, rate, served, flight, kids, up]);
    }
    format!("actor top: {} actors, every {:?}\n\n{}", seen.len(), every, table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_seconds_within_bounds() {
        assert_eq!(interval("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(interval("2"), Ok(Duration::from_secs(2)));
        for bad in ["0", "-1", "nan", "inf", "1e9", "fast", ""] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rate_is_growth_over_time_and_a_restart_has_none() {
        let t0 = Instant::now();
        let uid = |n: &str| Uid { name: n.into(), id: "01".into() };
        let before: HashMap<Uid, Sample> =
            [(uid("a"), Sample { at: t0, served: 10 }), (uid("b"), Sample { at: t0, served: 50 })].into();
        let t1 = t0 + Duration::from_secs(2);
        let now: HashMap<Uid, Sample> = [
            (uid("a"), Sample { at: t1, served: 30 }),
            (uid("b"), Sample { at: t1, served: 3 }),
            (uid("c"), Sample { at: t1, served: 9 }),
        ]
        .into();
        let r = rates(&before, &now);
        assert_eq!(r.get(&uid("a")), Some(&10.0));
        assert_eq!(r.get(&uid("b")), None);
        assert_eq!(r.get(&uid("c")), None);
    }
}
