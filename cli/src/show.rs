//! Showing a survey: `actor ps` as a table or a JSON array, `actor tree` as
//! a drawn tree or nested JSON. Names and uids come from peers: the text
//! forms escape them (uid `Display` does), JSON escapes them itself.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actor::Uid;
use actor::transport::Escaped;
use serde_json::{Value, json};

use crate::survey::{Seen, full};

/// Restart counts by uid, as the actors' parents report them (an actor
/// does not know how often its nursery restarted it; the nursery does).
fn restarts(seen: &[Seen]) -> HashMap<&Uid, u32> {
    seen.iter()
        .filter_map(|s| s.report.as_ref().ok())
        .flat_map(|r| r.children.iter().map(|c| (&c.uid, c.restarts)))
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One actor as a JSON object (its children as uids: `tree` nests them).
fn object(s: &Seen, restarts: &HashMap<&Uid, u32>, now: u64) -> Value {
    let mut o = json!({
        "name": s.entry.uid.name,
        "uid": full(&s.entry.uid),
        "addr": s.entry.addr.to_string(),
        "restarts": restarts.get(&s.entry.uid).copied().unwrap_or(0),
    });
    match &s.report {
        Ok(r) => {
            o["pid"] = json!(r.pid);
            o["host"] = json!(r.host);
            o["parent"] = json!(r.parent.as_ref().map(full));
            o["started_at_ms"] = json!(r.started_at_ms);
            o["uptime_ms"] = json!(now.saturating_sub(r.started_at_ms));
            o["calls_in_flight"] = json!(r.calls_in_flight);
            o["children"] = json!(r.children.iter().map(|c| full(&c.uid)).collect::<Vec<_>>());
        }
        Err(e) => o["error"] = json!(e),
    }
    o
}

/// `actor ps`: every registered actor, one per line or as a JSON array.
pub(crate) fn ps(seen: &[Seen], as_json: bool) -> String {
    let restarts = restarts(seen);
    let now = now_ms();
    if as_json {
        let all: Vec<Value> = seen.iter().map(|s| object(s, &restarts, now)).collect();
        return format!("{}\n", Value::Array(all));
    }
    let mut rows =
        vec![["NAME", "UID", "PID", "HOST", "PARENT", "UPTIME", "CALLS", "RESTARTS"].map(String::from)];
    for s in seen {
        let uid = &s.entry.uid;
        let (pid, host, parent, uptime, calls) = match &s.report {
            Ok(r) => (
                r.pid.to_string(),
                Escaped(&r.host).to_string(),
                r.parent.as_ref().map_or("-".into(), ToString::to_string),
                uptime(now.saturating_sub(r.started_at_ms)),
                r.calls_in_flight.to_string(),
            ),
            Err(e) => ("?".into(), Escaped(e).to_string(), "?".into(), "?".into(), "?".into()),
        };
        let restarts = restarts.get(uid).copied().unwrap_or(0).to_string();
        rows.push([
            Escaped(&uid.name).to_string(),
            uid.to_string(),
            pid,
            host,
            parent,
            uptime,
            calls,
            restarts,
        ]);
    }
    table(&rows)
}

/// Columns padded to their widest cell.
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// An uptime a person reads at a glance: `42s`, `3m07s`, `5h02m`, `2d03h`.
pub(crate) fn uptime(ms: u64) -> String {
    let s = Duration::from_millis(ms).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The survey arranged as a forest: the actors whose parent is not among
/// the registered ones are roots; each actor's children are those it
/// reports, in its order.
struct Forest<'a> {
    by_uid: HashMap<&'a Uid, &'a Seen>,
    roots: Vec<&'a Seen>,
    restarts: HashMap<&'a Uid, u32>,
}

impl<'a> Forest<'a> {
    fn new(seen: &'a [Seen]) -> Self {
        let by_uid: HashMap<&Uid, &Seen> = seen.iter().map(|s| (&s.entry.uid, s)).collect();
        let roots = seen
            .iter()
            .filter(|s| match &s.report {
                Ok(r) => r.parent.as_ref().is_none_or(|p| !by_uid.contains_key(p)),
                Err(_) => true,
            })
            .collect();
        let mut forest = Forest { by_uid, roots, restarts: restarts(seen) };
        // What the roots do not reach (a parent that does not list its new
        // child yet, or reports that contradict each other) is shown as a
        // root of its own: every registered actor appears once.
        let mut reached = HashSet::new();
        let reach = |from: &'a Uid, reached: &mut HashSet<&'a Uid>| {
            let mut stack = vec![from];
            while let Some(u) = stack.pop() {
                if reached.insert(u) {
                    stack.extend(forest.children(u));
                }
            }
        };
        for root in &forest.roots {
            reach(&root.entry.uid, &mut reached);
        }
        let mut strays = Vec::new();
        for s in seen {
            if !reached.contains(&s.entry.uid) {
                reach(&s.entry.uid, &mut reached);
                strays.push(s);
            }
        }
        forest.roots.extend(strays);
        forest
    }

    /// The children `uid` reports (a child not registered yet has no entry).
    fn children(&self, uid: &Uid) -> Vec<&'a Uid> {
        match self.by_uid.get(uid).map(|s| &s.report) {
            Some(Ok(r)) => r.children.iter().map(|c| &c.uid).collect(),
            _ => Vec::new(),
        }
    }

    /// `uid` and its descendants as nested JSON. `path` holds the actors
    /// above it: reports come from peers, and a cycle must not recurse forever.
    fn nested(&self, uid: &'a Uid, now: u64, path: &mut HashSet<&'a Uid>) -> Value {
        let mut node = match self.by_uid.get(uid) {
            Some(s) => object(s, &self.restarts, now),
            None => json!({ "name": uid.name, "uid": full(uid), "error": "not registered with the arbiter" }),
        };
        path.insert(uid);
        let below: Vec<&Uid> = self.children(uid).into_iter().filter(|c| !path.contains(c)).collect();
        let kids: Vec<Value> = below.into_iter().map(|c| self.nested(c, now, path)).collect();
        path.remove(uid);
        node["children"] = Value::Array(kids);
        node
    }

    /// `uid` and its descendants drawn one per line under `prefix`.
    fn draw(
        &self,
        uid: &'a Uid,
        prefix: &str,
        last: bool,
        top: bool,
        out: &mut String,
        path: &mut HashSet<&'a Uid>,
    ) {
        let branch = match (top, last) {
            (true, _) => "",
            (false, true) => "└── ",
            (false, false) => "├── ",
        };
        let what = match self.by_uid.get(uid).map(|s| &s.report) {
            Some(Ok(r)) => {
                let restarts = self.restarts.get(uid).copied().unwrap_or(0);
                let mut w = format!("pid {} on {}", r.pid, Escaped(&r.host));
                if restarts > 0 {
                    let plural = if restarts == 1 { "" } else { "s" };
                    let _ = write!(w, ", {restarts} restart{plural}");
                }
                w
            }
            Some(Err(e)) => format!("unreachable: {}", Escaped(e)),
            None => "not registered with the arbiter".into(),
        };
        let _ = writeln!(out, "{prefix}{branch}{uid} ({what})");
        let below = match (top, last) {
            (true, _) => prefix.to_owned(),
            (false, true) => format!("{prefix}    "),
            (false, false) => format!("{prefix}│   "),
        };
        path.insert(uid);
        let kids: Vec<&Uid> = self.children(uid).into_iter().filter(|c| !path.contains(c)).collect();
        for (i, kid) in kids.iter().enumerate() {
            self.draw(kid, &below, i + 1 == kids.len(), false, out, path);
        }
        path.remove(uid);
    }
}

/// `actor tree`: the supervision tree, drawn or as nested JSON (an array
/// of roots, each with its `children`).
pub(crate) fn tree(seen: &[Seen], as_json: bool) -> String {
    let forest = Forest::new(seen);
    let mut path = HashSet::new();
    if as_json {
        let now = now_ms();
        let roots: Vec<Value> =
            forest.roots.iter().map(|r| forest.nested(&r.entry.uid, now, &mut path)).collect();
        return format!("{}\n", Value::Array(roots));
    }
    let mut out = String::new();
    for root in &forest.roots {
        forest.draw(&root.entry.uid, "", true, true, &mut out, &mut path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actor as `ps` sees it, reporting `parent` and `children`.
    fn seen(name: &str, parent: Option<&str>, children: &[&str]) -> Seen {
        let uid = |n: &str| json!({ "name": n, "id": format!("{n}-id") });
        let report = json!({
            "uid": uid(name), "pid": 1, "host": "h", "parent": parent.map(uid), "started_at_ms": 0,
            "calls_in_flight": 0,
            "children": children.iter().map(|c| json!({ "uid": uid(c), "restarts": 0 })).collect::<Vec<_>>(),
        });
        let report = serde_json::from_value(report).expect("an introspection");
        let uid = Uid { name: name.into(), id: format!("{name}-id") };
        Seen {
            entry: actor::Entry { uid, addr: actor::Addr::loopback(1) },
            report: Ok(report),
            at: std::time::Instant::now(),
        }
    }

    #[test]
    fn children_nest_under_the_parent_that_reports_them() {
        let all = [seen("a", None, &["b"]), seen("b", Some("a"), &["c"]), seen("c", Some("b"), &[])];
        let drawn = tree(&all, false);
        assert_eq!(drawn, "a#a-id (pid 1 on h)\n└── b#b-id (pid 1 on h)\n    └── c#c-id (pid 1 on h)\n");
        let nested: Value = serde_json::from_str(&tree(&all, true)).expect("JSON");
        assert_eq!(nested[0]["children"][0]["children"][0]["name"], "c");
    }

    /// Reports come from peers: a cycle, or a child its parent does not
    /// list, still shows every actor once and ends.
    #[test]
    fn every_actor_appears_once_whatever_the_reports_say() {
        let all = [seen("x", Some("y"), &["y"]), seen("y", Some("x"), &["x"]), seen("z", Some("x"), &[])];
        let drawn = tree(&all, false);
        for name in ["x#", "y#", "z#"] {
            assert_eq!(drawn.matches(name).count(), 1, "{drawn}");
        }
        let nested: Value = serde_json::from_str(&tree(&all, true)).expect("JSON");
        assert_eq!(nested.as_array().map(Vec::len), Some(2), "{nested}");
    }

    #[test]
    fn uptimes_read_at_a_glance() {
        assert_eq!(uptime(42_000), "42s");
        assert_eq!(uptime(187_000), "3m07s");
        assert_eq!(uptime(5 * 3_600_000 + 120_000), "5h02m");
        assert_eq!(uptime(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
    }
}
