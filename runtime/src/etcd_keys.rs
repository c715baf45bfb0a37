//! How a registration is laid out in etcd, and how it is read back.
//!
//! One key per actor, `{prefix}{name}/{id}`, holding the JSON object
//! `{"addr":"tcp://host:port"}` and attached to the actor's lease. In the
//! name and the id, `%` is written `%25` and `/` is written `%2F`, so the
//! entries of one name are exactly the keys under `{prefix}{name}/`. Readers
//! ignore other fields of the object, so later versions may add some.
//!
//! Whatever is read back may have been written by anyone with access to the
//! prefix: lengths are capped and anything malformed is an error naming the
//! key, never a panic.

use actor_arbiter::Entry;
use actor_arbiter::registry::{MAX_ADDR_LEN, MAX_ID_LEN, MAX_NAME_LEN, check_addr, check_uid};
use actor_transport::{Addr, Uid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest value read back: an address at its longest, quoted, with
/// room for fields added later.
const MAX_VALUE_LEN: usize = 2 * MAX_ADDR_LEN + 64;
/// The longest key read back after the prefix: a name and an id at their
/// longest, every byte escaped.
const MAX_KEY_TAIL_LEN: usize = 3 * (MAX_NAME_LEN + MAX_ID_LEN) + 1;
/// How much of a malformed key an error message quotes.
const QUOTE_LEN: usize = 120;

/// The value stored under an actor's key.
#[derive(Serialize, Deserialize)]
struct Value {
    addr: String,
}

/// The key of `uid`'s registration under `prefix`.
pub(crate) fn key(prefix: &str, uid: &Uid) -> Vec<u8> {
    format!("{}{}", name_prefix(prefix, &uid.name), escape(&uid.id)).into_bytes()
}

/// The prefix of every key registered under `name`.
pub(crate) fn name_prefix(prefix: &str, name: &str) -> String {
    format!("{prefix}{}/", escape(name))
}

/// The value of a registration at `addr`.
pub(crate) fn value(addr: &Addr) -> Vec<u8> {
    // Serializing a struct of one string into a Vec cannot fail.
    serde_json::to_vec(&Value { addr: addr.to_string() }).unwrap_or_default()
}

/// The entry registered at `key` with `value`.
///
/// # Errors
///
/// [`Error::Arbiter`] naming the key (quoted up to 120 bytes) and what is
/// wrong with it: too long, outside `prefix`, badly escaped, a name or id
/// the arbiter would refuse, or a value that is not an address.
pub(crate) fn decode(prefix: &str, key: &[u8], value: &[u8]) -> Result<Entry> {
    parse(prefix, key, value).map_err(|why| {
        let shown = String::from_utf8_lossy(&key[..key.len().min(QUOTE_LEN)]).into_owned();
        let more = if key.len() > QUOTE_LEN { "..." } else { "" };
        Error::Arbiter(format!(
            "etcd holds a malformed registration at key `{}{more}`: {why}",
            shown.escape_debug()
        ))
    })
}

fn parse(prefix: &str, key: &[u8], value: &[u8]) -> std::result::Result<Entry, String> {
    let tail = key.strip_prefix(prefix.as_bytes()).ok_or("the key is outside the registry's prefix")?;
    if tail.len() > MAX_KEY_TAIL_LEN {
        return Err(format!("the key is longer than {} bytes", prefix.len() + MAX_KEY_TAIL_LEN));
    }
    let tail = std::str::from_utf8(tail).map_err(|_| "the key is not UTF-8")?;
    let (name, id) = tail.split_once('/').ok_or("the key has no `/` between the name and the id")?;
    let uid = Uid { name: unescape(name)?, id: unescape(id)? };
    check_uid(&uid).map_err(|e| e.to_string())?;
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("the value is {} bytes long, more than {MAX_VALUE_LEN}", value.len()));
    }
    let value: Value = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not a JSON object with an `addr` string ({e})"))?;
    let addr: Addr = value.addr.parse().map_err(|e| format!("the value's address is not valid ({e})"))?;
    check_addr(&addr).map_err(|e| e.to_string())?;
    Ok(Entry { uid, addr })
}

/// `text` with `%` and `/` percent-escaped.
fn escape(text: &str) -> String {
    text.replace('%', "%25").replace('/', "%2F")
}

/// The inverse of [`escape`]; an error for any other `%` sequence or a bare
/// `/`, which [`escape`] never writes.
fn unescape(text: &str) -> std::result::Result<String, String> {
    if text.contains('/') {
        return Err("the key has more than one `/` after the prefix".into());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        match code {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => {
                let shown: String = rest[at..].chars().take(3).collect();
                return Err(format!("the key has an unknown escape `{shown}`"));
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/procactor/actors/";

    fn uid(name: &str, id: &str) -> Uid {
        Uid { name: name.into(), id: id.into() }
    }

    #[test]
    fn an_entry_survives_the_round_trip_whatever_its_name() {
        let addr: Addr = "tcp://127.0.0.1:4000".parse().expect("addr");
        for name in ["calc", "a/b", "100%", "%2F", "/", "naïve name"] {
            let u = uid(name, "0af3/%");
            let k = key(P, &u);
            assert!(k.starts_with(name_prefix(P, name).as_bytes()));
            let e = decode(P, &k, &value(&addr)).expect("decodes");
            assert_eq!(e, Entry { uid: u, addr: addr.clone() });
        }
        assert_eq!(value(&addr), br#"{"addr":"tcp://127.0.0.1:4000"}"#);
    }

    #[test]
    fn one_name_is_never_the_prefix_of_another() {
        let k = key(P, &uid("a/b", "1"));
        assert!(!k.starts_with(name_prefix(P, "a").as_bytes()));
    }

    #[test]
    fn malformed_registrations_are_errors_naming_the_key() {
        let good = value(&"tcp://h:1".parse().expect("addr"));
        let long_name = format!("{P}{}/1", "n".repeat(MAX_NAME_LEN + 1));
        let huge_key = format!("{P}{}/1", "%25".repeat(MAX_KEY_TAIL_LEN));
        let cases: Vec<(String, Vec<u8>, &str)> = vec![
            ("/elsewhere/a/1".into(), good.clone(), "outside the registry's prefix"),
            (format!("{P}a"), good.clone(), "no `/`"),
            (format!("{P}a/1/2"), good.clone(), "more than one `/`"),
            (format!("{P}a%zz/1"), good.clone(), "unknown escape `%zz`"),
            (format!("{P}a%2/1"), good.clone(), "unknown escape `%2`"),
            (format!("{P}/1"), good.clone(), "empty"),
            (long_name, good.clone(), "longer"),
            (huge_key, good.clone(), "longer than"),
            (format!("{P}a/1"), b"tcp://h:1".to_vec(), "not a JSON object"),
            (format!("{P}a/1"), br#"{"addr":"nowhere"}"#.to_vec(), "address is not valid"),
            (format!("{P}a/1"), vec![b' '; MAX_VALUE_LEN + 1], "bytes long"),
        ];
        for (k, v, why) in cases {
            let err = decode(P, k.as_bytes(), &v).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(why) && err.contains("malformed registration at key"), "{k}: {err}");
            assert!(err.len() < 600, "the message quotes a bounded part of the key: {err}");
        }
        let err =
            decode(P, &[P.as_bytes(), &[0xff, b'/', b'1']].concat(), &good).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not UTF-8")));
    }
}
