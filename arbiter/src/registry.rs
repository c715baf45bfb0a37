//! The registry state: names mapped to `(uid, address)` entries, which connection
//! owns each entry, and the tasks waiting for a name to appear.
//!
//! The registry knows nothing of sockets: the server ([`crate::server`]) allocates
//! a [`ConnId`] per authenticated connection, registers entries on its behalf and
//! calls [`Registry::remove_connection`] when that connection closes or breaks, so
//! an actor that dies without unregistering (SIGKILL) still leaves the registry.
//!
//! An entry belongs to the connection that registered it: no other connection can
//! replace or remove it, so a peer that claims someone else's uid cannot redirect
//! callers to itself nor delete the real actor's entry. Everything the registry
//! stores is bounded: the length of every name, id and address ([`MAX_NAME_LEN`],
//! [`MAX_ID_LEN`], [`MAX_ADDR_LEN`]), and the number of entries and waiters
//! ([`Limits`]). Listings come in pages of bounded size ([`Page`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actor_transport::{Addr, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The longest actor name the registry stores or waits for, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest uid id the registry stores, in bytes (the runtime's ids are 16).
pub const MAX_ID_LEN: usize = 64;
/// The longest address the registry stores, in bytes of its text form
/// (`tcp://host:port`, `unix:///path`).
pub const MAX_ADDR_LEN: usize = 1024;
/// The most entries one [`Page`] holds.
pub const MAX_PAGE_ENTRIES: usize = 1024;
/// A bound on the encoded size of one [`Page`]'s entries, in bytes: pages stop
/// before exceeding it, so a reply always fits the arbiter's frame limit.
pub const MAX_PAGE_BYTES: usize = 48 * 1024;
/// An upper bound on what msgpack adds to one entry's strings (array and string
/// headers), used to keep pages under [`MAX_PAGE_BYTES`].
const ENTRY_OVERHEAD: usize = 32;

/// One registered actor: who it is and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The actor's identity; `uid.name` is the name it is registered under.
    pub uid: Uid,
    /// The address its listener is bound to.
    pub addr: Addr,
}

/// One page of a listing: entries in order (by name, then uid), and whether
/// more follow the last of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The entries, sorted by name then uid.
    pub entries: Vec<Entry>,
    /// Whether entries follow the last one (ask again with it as the cursor).
    pub more: bool,
}

/// Identifies one client connection of the registry; entries registered over it
/// are removed by [`Registry::remove_connection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// How many entries and waiters a [`Registry`] holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries over all connections (default 16,384).
    pub max_entries: usize,
    /// Entries one connection may own (default 16; the arbiter's server only
    /// ever registers a connection's own uid, so there it is at most 1).
    pub max_entries_per_connection: usize,
    /// Pending [`Registry::wait_for`] calls over all names (default 16,384).
    pub max_waiters: usize,
    /// Open connections of a server on this registry, handshaking or
    /// authenticated (default 16,384: one per entry; each costs some 25 KiB).
    /// The server closes connections past it as soon as it accepts them.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 16_384,
            max_entries_per_connection: 16,
            max_waiters: 16_384,
            max_connections: 16_384,
        }
    }
}

/// Why the registry refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The actor's name is empty.
    #[error("cannot register an actor with an empty name")]
    EmptyName,
    /// The actor's name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("actor name of {len} bytes is longer than the maximum of {max} bytes")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// [`MAX_NAME_LEN`].
        max: usize,
    },
    /// The uid's id is longer than [`MAX_ID_LEN`] bytes.
    #[error("uid id of {len} bytes is longer than the maximum of {max} bytes")]
    IdTooLong {
        /// The id's length in bytes.
        len: usize,
        /// [`MAX_ID_LEN`].
        max: usize,
    },
    /// The address is longer than [`MAX_ADDR_LEN`] bytes.
    #[error("address of {len} bytes is longer than the maximum of {max} bytes")]
    AddrTooLong {
        /// The address's length in bytes, as text.
        len: usize,
        /// [`MAX_ADDR_LEN`].
        max: usize,
    },
    /// Another live connection registered this uid; only it can change or
    /// remove the entry.
    #[error(
        "`{uid}` is registered by another connection; only that connection can replace or remove it \
         (is another process using the same uid?)"
    )]
    Claimed {
        /// The uid in question.
        uid: Uid,
    },
    /// The connection already owns [`Limits::max_entries_per_connection`] entries.
    #[error("this connection already owns the maximum of {max} entries")]
    ConnectionFull {
        /// The limit.
        max: usize,
    },
    /// The registry holds [`Limits::max_entries`] entries.
    #[error("the registry is full: it holds the maximum of {max} entries")]
    RegistryFull {
        /// The limit.
        max: usize,
    },
    /// [`Limits::max_waiters`] waits are already pending.
    #[error("too many pending waits: the maximum is {max}")]
    TooManyWaiters {
        /// The limit.
        max: usize,
    },
}

/// The kind of a [`RegistryError`], without its details: what a client matches
/// on. It travels as the remote error's `type_name` ([`Refusal::type_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// [`RegistryError::EmptyName`].
    EmptyName,
    /// [`RegistryError::NameTooLong`].
    NameTooLong,
    /// [`RegistryError::IdTooLong`].
    IdTooLong,
    /// [`RegistryError::AddrTooLong`].
    AddrTooLong,
    /// [`RegistryError::Claimed`].
    Claimed,
    /// [`RegistryError::ConnectionFull`].
    ConnectionFull,
    /// [`RegistryError::RegistryFull`].
    RegistryFull,
    /// [`RegistryError::TooManyWaiters`], or the server's per-connection cap on
    /// pending waits.
    TooManyWaiters,
    /// Not a registry error: the server refuses a [`crate::FIND`] or
    /// [`crate::LIST`] whose result does not fit one reply (page through it with
    /// [`crate::FIND_PAGE`] or [`crate::LIST_PAGE`]).
    ReplyTooLarge,
}

impl Refusal {
    const ALL: [Refusal; 9] = [
        Refusal::EmptyName,
        Refusal::NameTooLong,
        Refusal::IdTooLong,
        Refusal::AddrTooLong,
        Refusal::Claimed,
        Refusal::ConnectionFull,
        Refusal::RegistryFull,
        Refusal::TooManyWaiters,
        Refusal::ReplyTooLarge,
    ];

    /// The stable name this refusal carries on the wire as the remote error's
    /// `type_name`, e.g. `arbiter::Claimed`.
    pub const fn type_name(self) -> &'static str {
        match self {
            Refusal::EmptyName => "arbiter::EmptyName",
            Refusal::NameTooLong => "arbiter::NameTooLong",
            Refusal::IdTooLong => "arbiter::IdTooLong",
            Refusal::AddrTooLong => "arbiter::AddrTooLong",
            Refusal::Claimed => "arbiter::Claimed",
            Refusal::ConnectionFull => "arbiter::ConnectionFull",
            Refusal::RegistryFull => "arbiter::RegistryFull",
            Refusal::TooManyWaiters => "arbiter::TooManyWaiters",
            Refusal::ReplyTooLarge => "arbiter::ReplyTooLarge",
        }
    }

    /// The refusal named `type_name` ([`Refusal::type_name`]); `None` for any
    /// other name.
    pub fn from_type_name(type_name: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.type_name() == type_name)
    }
}

impl RegistryError {
    /// This error's kind.
    pub fn refusal(&self) -> Refusal {
        match self {
            RegistryError::EmptyName => Refusal::EmptyName,
            RegistryError::NameTooLong { .. } => Refusal::NameTooLong,
            RegistryError::IdTooLong { .. } => Refusal::IdTooLong,
            RegistryError::AddrTooLong { .. } => Refusal::AddrTooLong,
            RegistryError::Claimed { .. } => Refusal::Claimed,
            RegistryError::ConnectionFull { .. } => Refusal::ConnectionFull,
            RegistryError::RegistryFull { .. } => Refusal::RegistryFull,
            RegistryError::TooManyWaiters { .. } => Refusal::TooManyWaiters,
        }
    }
}

/// Checks a name the registry would store or wait for: not empty, at most
/// [`MAX_NAME_LEN`] bytes.
///
/// # Errors
///
/// [`RegistryError::EmptyName`] or [`RegistryError::NameTooLong`].
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() {
        return Err(RegistryError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(RegistryError::NameTooLong { len: name.len(), max: MAX_NAME_LEN });
    }
    Ok(())
}

/// Checks a uid the registry would store: its name as [`check_name`], its id at
/// most [`MAX_ID_LEN`] bytes.
///
/// # Errors
///
/// As [`check_name`], and [`RegistryError::IdTooLong`].
pub fn check_uid(uid: &Uid) -> Result<(), RegistryError> {
    check_name(&uid.name)?;
    if uid.id.len() > MAX_ID_LEN {
        return Err(RegistryError::IdTooLong { len: uid.id.len(), max: MAX_ID_LEN });
    }
    Ok(())
}

/// The length of `addr` as text, if it is at most [`MAX_ADDR_LEN`] bytes.
///
/// # Errors
///
/// [`RegistryError::AddrTooLong`].
pub fn check_addr(addr: &Addr) -> Result<usize, RegistryError> {
    let len = addr.to_string().len();
    if len > MAX_ADDR_LEN {
        return Err(RegistryError::AddrTooLong { len, max: MAX_ADDR_LEN });
    }
    Ok(len)
}

struct Slot {
    addr: Addr,
    /// `addr` as text, in bytes: what it costs in a page.
    addr_len: usize,
    owner: ConnId,
}

impl Slot {
    /// An upper bound on the encoded size of this entry in a [`Page`].
    fn cost(&self, uid: &Uid) -> usize {
        uid.name.len() + uid.id.len() + self.addr_len + ENTRY_OVERHEAD
    }
}

/// Waiters for one name: they share one `Notify`, and the slot is removed when the
/// last waiter goes, so abandoned waits leave nothing behind.
struct Waiting {
    notify: Arc<Notify>,
    count: usize,
}

#[derive(Default)]
struct State {
    /// Ordered by uid, which orders by name then id: the entries of one name are
    /// one contiguous range.
    entries: BTreeMap<Uid, Slot>,
    /// Which uids each connection owns.
    owned: HashMap<ConnId, BTreeSet<Uid>>,
    /// Connections allocated and not yet removed.
    live: HashSet<ConnId>,
    /// Names someone is waiting for.
    waiting: HashMap<String, Waiting>,
    /// The sum of `waiting`'s counts.
    waiters: usize,
}

impl State {
    /// The entries from `start` on while `keep` holds, as one bounded page.
    fn page(&self, start: Bound<Uid>, keep: impl Fn(&Uid) -> bool, limit: usize) -> Page {
        let limit = if limit == 0 { MAX_PAGE_ENTRIES } else { limit.min(MAX_PAGE_ENTRIES) };
        let mut page = Page::default();
        let mut bytes = 0;
        for (uid, slot) in self.entries.range((start, Bound::Unbounded)).take_while(|(uid, _)| keep(uid)) {
            // Every entry fits a page on its own (its lengths are capped), so a
            // page is never empty while entries remain.
            let cost = slot.cost(uid);
            if page.entries.len() == limit || bytes + cost > MAX_PAGE_BYTES {
                page.more = true;
                break;
            }
            bytes += cost;
            page.entries.push(Entry { uid: uid.clone(), addr: slot.addr.clone() });
        }
        page
    }

    fn find_page(&self, name: &str, after: Option<&str>, limit: usize) -> Page {
        let start = match after {
            Some(id) => Bound::Excluded(Uid { name: name.to_owned(), id: id.to_owned() }),
            None => Bound::Included(Uid { name: name.to_owned(), id: String::new() }),
        };
        self.page(start, |uid| uid.name == name, limit)
    }

    fn disown(&mut self, owner: ConnId, uid: &Uid) {
        if let Some(set) = self.owned.get_mut(&owner) {
            set.remove(uid);
            if set.is_empty() {
                self.owned.remove(&owner);
            }
        }
    }
}

/// The name registry: thread-safe, shared by all connections of one arbiter.
///
/// Several actors (different uids) may share a name; a uid has at most one entry,
/// owned by the connection that registered it.
#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
    next_conn: AtomicU64,
    limits: Limits,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Registry")
            .field("entries", &st.entries.len())
            .field("connections", &st.live.len())
            .field("waited_names", &st.waiting.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Registry {
    /// An empty registry with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Registry { limits, ..Self::default() }
    }

    /// This registry's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in this module panics while holding the lock except on allocation
        // failure, which leaves the maps consistent; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Allocates a fresh connection id, live until [`Registry::remove_connection`].
    /// Never fails.
    pub fn connection(&self) -> ConnId {
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        self.lock().live.insert(id);
        id
    }

    /// The number of live connections (allocated and not yet removed).
    pub fn connection_count(&self) -> usize {
        self.lock().live.len()
    }

    /// Registers `uid` under its own name (`uid.name`) at `addr`, owned by `owner`.
    /// If `owner` registered the uid before, its address is replaced. Wakes every
    /// task waiting for the name.
    ///
    /// Returns the previous address if `owner` had registered the uid already.
    ///
    /// # Errors
    ///
    /// Nothing changes on error: [`RegistryError::Claimed`] if another connection
    /// owns the uid; [`RegistryError::EmptyName`], [`RegistryError::NameTooLong`],
    /// [`RegistryError::IdTooLong`] or [`RegistryError::AddrTooLong`] for a length
    /// out of bounds; [`RegistryError::ConnectionFull`] or
    /// [`RegistryError::RegistryFull`] past the [`Limits`].
    pub fn register(&self, owner: ConnId, uid: Uid, addr: Addr) -> Result<Option<Addr>, RegistryError> {
        check_uid(&uid)?;
        let addr_len = check_addr(&addr)?;
        let mut st = self.lock();
        let previous = match st.entries.get_mut(&uid) {
            Some(slot) if slot.owner != owner => return Err(RegistryError::Claimed { uid }),
            Some(slot) => {
                slot.addr_len = addr_len;
                Some(std::mem::replace(&mut slot.addr, addr))
            }
            None => {
                if st.entries.len() >= self.limits.max_entries {
                    return Err(RegistryError::RegistryFull { max: self.limits.max_entries });
                }
                let max = self.limits.max_entries_per_connection;
                if st.owned.get(&owner).is_some_and(|set| set.len() >= max) {
                    return Err(RegistryError::ConnectionFull { max });
                }
                st.entries.insert(uid.clone(), Slot { addr, addr_len, owner });
                st.owned.entry(owner).or_default().insert(uid.clone());
                None
            }
        };
        if let Some(w) = st.waiting.get(&uid.name) {
            w.notify.notify_waiters();
        }
        Ok(previous)
    }

    /// Removes the entry of `uid` if connection `owner` registered it.
    ///
    /// Returns the removed entry, or `None` if the uid was not registered (which is
    /// not an error: unregistering is idempotent).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Claimed`] if another connection owns the uid; the entry
    /// stays.
    pub fn unregister(&self, owner: ConnId, uid: &Uid) -> Result<Option<Entry>, RegistryError> {
        let mut st = self.lock();
        match st.entries.get(uid) {
            None => return Ok(None),
            Some(slot) if slot.owner != owner => return Err(RegistryError::Claimed { uid: uid.clone() }),
            Some(_) => {}
        }
        let Some(slot) = st.entries.remove(uid) else { return Ok(None) };
        st.disown(owner, uid);
        Ok(Some(Entry { uid: uid.clone(), addr: slot.addr }))
    }

    /// Removes every entry owned by connection `owner` (it closed or broke), and
    /// the connection itself.
    ///
    /// Returns the removed entries, sorted by name then uid; empty if it owned none.
    pub fn remove_connection(&self, owner: ConnId) -> Vec<Entry> {
        let mut st = self.lock();
        st.live.remove(&owner);
        let Some(uids) = st.owned.remove(&owner) else {
            return Vec::new();
        };
        uids.into_iter()
            .filter_map(|uid| {
                let slot = st.entries.remove(&uid)?;
                Some(Entry { uid, addr: slot.addr })
            })
            .collect()
    }

    /// Every entry registered under `name`, sorted by uid; empty if there are
    /// none. Unbounded: for in-process use; replies to peers use
    /// [`Registry::find_page`].
    pub fn find(&self, name: &str) -> Vec<Entry> {
        let st = self.lock();
        let start = Uid { name: name.to_owned(), id: String::new() };
        st.entries
            .range(start..)
            .take_while(|(uid, _)| uid.name == name)
            .map(|(uid, slot)| Entry { uid: uid.clone(), addr: slot.addr.clone() })
            .collect()
    }

    /// One page of the entries under `name`, sorted by uid: those whose id
    /// follows `after` (all with `None`), at most `limit` of them (0 or more
    /// than [`MAX_PAGE_ENTRIES`] means [`MAX_PAGE_ENTRIES`]) and at most
    /// [`MAX_PAGE_BYTES`] encoded. Never fails.
    pub fn find_page(&self, name: &str, after: Option<&str>, limit: usize) -> Page {
        self.lock().find_page(name, after, limit)
    }

    /// Every entry, sorted by name then uid. Unbounded: for in-process use;
    /// replies to peers use [`Registry::list_page`].
    pub fn list(&self) -> Vec<Entry> {
        self.lock()
            .entries
            .iter()
            .map(|(uid, slot)| Entry { uid: uid.clone(), addr: slot.addr.clone() })
            .collect()
    }

    /// One page of all entries, sorted by name then uid: those after the uid
    /// `after` (from the first with `None`), bounded as for
    /// [`Registry::find_page`]. Never fails.
    pub fn list_page(&self, after: Option<&Uid>, limit: usize) -> Page {
        let start = match after {
            Some(uid) => Bound::Excluded(uid.clone()),
            None => Bound::Unbounded,
        };
        self.lock().page(start, |_| true, limit)
    }

    /// The number of registered entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one entry exists under `name` and returns the first
    /// page of its entries (as [`Registry::find_page`]; immediately if there
    /// already is one). It may wait forever.
    ///
    /// # Errors
    ///
    /// At once, before waiting: [`RegistryError::EmptyName`] or
    /// [`RegistryError::NameTooLong`] for a name that could never be registered,
    /// [`RegistryError::TooManyWaiters`] past [`Limits::max_waiters`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future removes its waiter (see
    /// [`Registry::waiter_count`]).
    pub async fn wait_for(&self, name: &str) -> Result<Vec<Entry>, RegistryError> {
        check_name(name)?;
        let waiter = Waiter::new(self, name)?;
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Enabled before looking, so a registration between the look and the
            // await is not missed.
            notified.as_mut().enable();
            let found = self.find_page(name, None, MAX_PAGE_ENTRIES);
            if !found.entries.is_empty() {
                return Ok(found.entries);
            }
            notified.await;
        }
    }

    /// The number of [`Registry::wait_for`] calls currently waiting, over all names.
    pub fn waiter_count(&self) -> usize {
        self.lock().waiters
    }
}

/// Counts one waiter of one name for as long as it lives.
struct Waiter<'a> {
    registry: &'a Registry,
    name: &'a str,
    notify: Arc<Notify>,
}

impl<'a> Waiter<'a> {
    fn new(registry: &'a Registry, name: &'a str) -> Result<Self, RegistryError> {
        let mut st = registry.lock();
        let max = registry.limits.max_waiters;
        if st.waiters >= max {
            return Err(RegistryError::TooManyWaiters { max });
        }
        st.waiters += 1;
        let w = st
            .waiting
            .entry(name.to_owned())
            .or_insert_with(|| Waiting { notify: Arc::new(Notify::new()), count: 0 });
        w.count += 1;
        let notify = w.notify.clone();
        drop(st);
        Ok(Waiter { registry, name, notify })
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut st = self.registry.lock();
        st.waiters = st.waiters.saturating_sub(1);
        if let Some(w) = st.waiting.get_mut(self.name) {
            w.count = w.count.saturating_sub(1);
            if w.count == 0 {
                st.waiting.remove(self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn uid(name: &str, id: &str) -> Uid {
        Uid { name: name.into(), id: id.into() }
    }

    fn addr(port: u16) -> Addr {
        Addr::loopback(port)
    }

    #[test]
    fn register_find_list_sorted() {
        let r = Registry::new();
        let c = r.connection();
        r.register(c, uid("b", "1"), addr(1)).unwrap();
        r.register(c, uid("a", "2"), addr(2)).unwrap();
        r.register(c, uid("a", "1"), addr(3)).unwrap();
        r.register(c, uid("ab", "0"), addr(4)).unwrap();
        let names: Vec<_> = r.list().into_iter().map(|e| (e.uid.name, e.uid.id)).collect();
        assert_eq!(
            names,
            [("a", "1"), ("a", "2"), ("ab", "0"), ("b", "1")].map(|(n, i)| (n.to_owned(), i.to_owned()))
        );
        let a = r.find("a");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], Entry { uid: uid("a", "1"), addr: addr(3) });
        assert!(r.find("").is_empty());
        assert!(r.find("zzz").is_empty());
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn only_the_owning_connection_replaces_or_removes_an_entry() {
        let r = Registry::new();
        let (c1, c2) = (r.connection(), r.connection());
        assert_eq!(r.register(c1, uid("a", "1"), addr(1)), Ok(None));
        assert_eq!(r.register(c1, uid("a", "1"), addr(2)), Ok(Some(addr(1))));
        // Another connection claiming the same uid is refused and changes nothing.
        let claimed = r.register(c2, uid("a", "1"), addr(3));
        assert_eq!(claimed, Err(RegistryError::Claimed { uid: uid("a", "1") }));
        assert_eq!(r.unregister(c2, &uid("a", "1")), Err(RegistryError::Claimed { uid: uid("a", "1") }));
        assert!(r.remove_connection(c2).is_empty());
        assert_eq!(r.find("a"), vec![Entry { uid: uid("a", "1"), addr: addr(2) }]);
        assert_eq!(r.remove_connection(c1).len(), 1);
        assert!(r.is_empty());
        assert_eq!(r.connection_count(), 0);
    }

    #[test]
    fn refuses_bad_names() {
        let r = Registry::new();
        let c = r.connection();
        assert_eq!(r.register(c, uid("", "1"), addr(1)), Err(RegistryError::EmptyName));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(r.register(c, uid(&long, "1"), addr(1)), Err(RegistryError::NameTooLong { .. })));
        let long_id = "i".repeat(MAX_ID_LEN + 1);
        assert!(matches!(r.register(c, uid("a", &long_id), addr(1)), Err(RegistryError::IdTooLong { .. })));
        let long_addr = Addr::Unix(format!("/{}", "p".repeat(MAX_ADDR_LEN)).into());
        assert!(matches!(r.register(c, uid("a", "1"), long_addr), Err(RegistryError::AddrTooLong { .. })));
        assert!(r.is_empty());
        assert!(r.remove_connection(c).is_empty());
    }

    #[test]
    fn unregister_and_connection_removal() {
        let r = Registry::new();
        let (c1, c2) = (r.connection(), r.connection());
        r.register(c1, uid("a", "1"), addr(1)).unwrap();
        r.register(c1, uid("b", "1"), addr(2)).unwrap();
        r.register(c2, uid("a", "2"), addr(3)).unwrap();
        assert_eq!(r.unregister(c1, &uid("b", "1")).map(|e| e.map(|e| e.addr)), Ok(Some(addr(2))));
        assert_eq!(r.unregister(c1, &uid("b", "1")), Ok(None));
        let removed = r.remove_connection(c1);
        assert_eq!(removed, vec![Entry { uid: uid("a", "1"), addr: addr(1) }]);
        assert_eq!(r.find("a"), vec![Entry { uid: uid("a", "2"), addr: addr(3) }]);
        assert!(r.remove_connection(c1).is_empty());
        let st = r.lock();
        assert!(!st.owned.contains_key(&c1));
    }

    #[tokio::test]
    async fn wait_for_resolves_now_or_later() {
        let r = Arc::new(Registry::new());
        let c = r.connection();
        r.register(c, uid("now", "1"), addr(1)).unwrap();
        assert_eq!(r.wait_for("now").await.unwrap().len(), 1);
        assert_eq!(r.waiter_count(), 0);

        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait_for("later").await }
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while r.waiter_count() != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        // A registration under another name does not resolve it.
        r.register(c, uid("other", "1"), addr(2)).unwrap();
        r.register(c, uid("later", "1"), addr(3)).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(got, vec![Entry { uid: uid("later", "1"), addr: addr(3) }]);
        assert_eq!(r.waiter_count(), 0);
        assert!(r.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn dropped_waiters_leave_nothing() {
        let r = Registry::new();
        {
            let w1 = r.wait_for("x");
            let w2 = r.wait_for("x");
            let w3 = r.wait_for("y");
            tokio::pin!(w1, w2, w3);
            for w in [w1.as_mut(), w2.as_mut()] {
                assert!(tokio::time::timeout(Duration::from_millis(10), w).await.is_err());
            }
            assert!(tokio::time::timeout(Duration::from_millis(10), w3.as_mut()).await.is_err());
            assert_eq!(r.waiter_count(), 3);
        }
        assert_eq!(r.waiter_count(), 0);
        assert!(r.lock().waiting.is_empty());
    }

    #[test]
    fn entries_are_capped_per_connection_and_in_total() {
        let r = Registry::with_limits(Limits {
            max_entries: 3,
            max_entries_per_connection: 2,
            max_waiters: 1,
            max_connections: 1,
        });
        let (c1, c2) = (r.connection(), r.connection());
        r.register(c1, uid("a", "1"), addr(1)).unwrap();
        r.register(c1, uid("a", "2"), addr(2)).unwrap();
        assert_eq!(r.register(c1, uid("a", "3"), addr(3)), Err(RegistryError::ConnectionFull { max: 2 }));
        // Re-registering an owned uid is not a new entry.
        assert_eq!(r.register(c1, uid("a", "2"), addr(4)), Ok(Some(addr(2))));
        r.register(c2, uid("b", "1"), addr(5)).unwrap();
        assert_eq!(r.register(c2, uid("b", "2"), addr(6)), Err(RegistryError::RegistryFull { max: 3 }));
        assert_eq!(r.len(), 3);
        r.remove_connection(c1);
        r.register(c2, uid("b", "2"), addr(6)).unwrap();
    }

    #[tokio::test]
    async fn waits_are_capped_and_bad_names_refused_at_once() {
        let r = Registry::with_limits(Limits { max_waiters: 1, ..Limits::default() });
        assert_eq!(r.wait_for("").await, Err(RegistryError::EmptyName));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(r.wait_for(&long).await, Err(RegistryError::NameTooLong { .. })));
        let first = r.wait_for("x");
        tokio::pin!(first);
        assert!(tokio::time::timeout(Duration::from_millis(1), first.as_mut()).await.is_err());
        assert_eq!(r.wait_for("y").await, Err(RegistryError::TooManyWaiters { max: 1 }));
        assert_eq!(r.waiter_count(), 1);
    }

    #[test]
    fn pages_cover_everything_once_in_order() {
        let r = Registry::new();
        let c = r.connection();
        let mut expected = Vec::new();
        for name in ["a", "b", "c"] {
            for i in 0..5 {
                let u = uid(name, &i.to_string());
                r.register(c, u.clone(), addr(i)).unwrap();
                expected.push(u);
            }
        }
        let mut got = Vec::new();
        let mut after: Option<Uid> = None;
        loop {
            let page = r.list_page(after.as_ref(), 4);
            assert!(page.entries.len() <= 4 && !page.entries.is_empty());
            after = page.entries.last().map(|e| e.uid.clone());
            got.extend(page.entries.into_iter().map(|e| e.uid));
            if !page.more {
                break;
            }
        }
        assert_eq!(got, expected);
        let b = r.find_page("b", Some("1"), 2);
        assert_eq!(b.entries.iter().map(|e| e.uid.id.as_str()).collect::<Vec<_>>(), ["2", "3"]);
        assert!(b.more);
        let b = r.find_page("b", Some("3"), 0);
        assert_eq!(b.entries.len(), 1);
        assert!(!b.more);
        assert!(r.find_page("zz", None, 0).entries.is_empty());
    }

    #[test]
    fn a_page_of_the_largest_entries_fits_the_byte_bound() {
        let r = Registry::with_limits(Limits { max_entries_per_connection: 100, ..Limits::default() });
        let c = r.connection();
        let name = "n".repeat(MAX_NAME_LEN);
        let host = "h".repeat(MAX_ADDR_LEN - "tcp://:65535".len());
        for i in 0..100 {
            let id = format!("{i:0>width$}", width = MAX_ID_LEN);
            let a = Addr::Tcp { host: host.clone(), port: 65535 };
            assert_eq!(a.to_string().len(), MAX_ADDR_LEN);
            r.register(c, uid(&name, &id), a).unwrap();
        }
        let page = r.list_page(None, 0);
        assert!(page.more);
        let encoded = rmp_serde::to_vec(&page).unwrap();
        assert!(encoded.len() <= MAX_PAGE_BYTES, "{} bytes", encoded.len());
        // The bound is not wildly pessimistic either.
        assert!(encoded.len() >= MAX_PAGE_BYTES * 9 / 10, "{} bytes", encoded.len());
    }
}
