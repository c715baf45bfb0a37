//! What the tree looks like now: every actor the arbiter knows, each asked
//! to describe itself; and finding one actor by what a person typed.

use std::time::{Duration, Instant};

use actor::{Entry, Introspection, Portal, Uid};

/// How long one actor may take to describe itself: one that hangs is shown
/// as unreachable rather than stalling the whole listing.
const ASK_BOUND: Duration = Duration::from_secs(5);

/// One registered actor and what it said about itself.
pub(crate) struct Seen {
    /// Its arbiter entry.
    pub entry: Entry,
    /// Its own report, or why it could not be had.
    pub report: Result<Introspection, String>,
    /// When the report (or the failure) came in.
    pub at: Instant,
}

/// The registered actors other than this command itself, sorted by name
/// then uid (the arbiter's order).
pub(crate) async fn entries() -> actor::Result<Vec<Entry>> {
    let me = actor::uid()?;
    Ok(actor::list_actors().await?.into_iter().filter(|e| e.uid != me).collect())
}

/// Every registered actor, each asked at once to describe itself.
pub(crate) async fn survey() -> actor::Result<Vec<Seen>> {
    let asks = entries().await?.into_iter().map(|entry| async move {
        let report = match tokio::time::timeout(ASK_BOUND, ask(&entry)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {ASK_BOUND:?}")),
        };
        Seen { entry, report, at: Instant::now() }
    });
    Ok(futures::future::join_all(asks).await)
}

async fn ask(entry: &Entry) -> actor::Result<Introspection> {
    actor::connect_to_entry(entry).await?.introspect().await
}

/// The full form of a uid, `name#id`, as the JSON output spells it.
pub(crate) fn full(uid: &Uid) -> String {
    format!("{}#{}", uid.name, uid.id)
}

/// Whether `wanted` names `uid`: its name, its full uid, or its uid with
/// the id shortened (`name#abcdef`, as the text output shows it), or an id
/// or a prefix of one.
fn names(wanted: &str, uid: &Uid) -> bool {
    match wanted.rsplit_once('#') {
        Some((name, id)) => name == uid.name && !id.is_empty() && uid.id.starts_with(id),
        None => wanted == uid.name || (wanted.len() >= 4 && uid.id.starts_with(wanted)),
    }
}

/// A portal to the one actor that `wanted` names (see [`names`]).
///
/// # Errors
///
/// When no actor, or more than one, matches: the message lists the
/// candidates so the person can pick one by uid.
pub(crate) async fn find(wanted: &str) -> actor::Result<Portal> {
    let all = entries().await?;
    let matches: Vec<&Entry> = all.iter().filter(|e| names(wanted, &e.uid)).collect();
    match matches.as_slice() {
        [one] => actor::connect_to_entry(one).await,
        [] => Err(actor::Error::msg(format!("no live actor is named `{wanted}` (see `actor ps`)"))),
        several => {
            let uids: Vec<String> = several.iter().map(|e| full(&e.uid)).collect();
            Err(actor::Error::msg(format!(
                "{} actors match `{wanted}`; name one by uid: {}",
                several.len(),
                uids.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_is_named_by_name_uid_short_uid_or_id_prefix() {
        let uid = Uid { name: "worker".into(), id: "0123456789abcdef".into() };
        for yes in ["worker", "worker#0123456789abcdef", "worker#012345", "0123", "0123456789abcdef"] {
            assert!(names(yes, &uid), "{yes}");
        }
        for no in ["work", "other#012345", "worker#", "worker#9", "012", "9876"] {
            assert!(!names(no, &uid), "{no}");
        }
    }
}
