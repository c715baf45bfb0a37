//! The registry state: names mapped to `(uid, address)` entries, which connection
//! owns each entry, and the tasks waiting for a name to appear.
//!
//! The registry knows nothing of sockets: the server ([`crate::server`]) allocates
//! a [`ConnId`] per authenticated connection, registers entries on its behalf and
//! calls [`Registry::remove_connection`] when that connection closes or breaks, so
//! an actor that dies without unregistering (SIGKILL) still leaves the registry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actor_transport::{Addr, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The longest actor name the registry accepts, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// One registered actor: who it is and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The actor's identity; `uid.name` is the name it is registered under.
    pub uid: Uid,
    /// The address its listener is bound to.
    pub addr: Addr,
}

/// Identifies one client connection of the registry; entries registered over it
/// are removed by [`Registry::remove_connection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// Why the registry refused a registration.
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
}

struct Slot {
    addr: Addr,
    owner: ConnId,
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
    /// Names someone is waiting for.
    waiting: HashMap<String, Waiting>,
}

impl State {
    fn find(&self, name: &str) -> Vec<Entry> {
        let start = Uid { name: name.to_owned(), id: String::new() };
        self.entries
            .range(start..)
            .take_while(|(uid, _)| uid.name == name)
            .map(|(uid, slot)| Entry { uid: uid.clone(), addr: slot.addr.clone() })
            .collect()
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
/// and registering it again replaces its address and owner.
#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Registry")
            .field("entries", &st.entries.len())
            .field("connections", &st.owned.len())
            .field("waited_names", &st.waiting.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in this module panics while holding the lock except on allocation
        // failure, which leaves the maps consistent; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Allocates a fresh connection id. Never fails.
    pub fn connection(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers `uid` under its own name (`uid.name`) at `addr`, owned by `owner`.
    /// A uid registered before (over any connection) gets the new address and
    /// owner. Wakes every task waiting for the name.
    ///
    /// Returns the previous address if the uid was already registered.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] if the name is empty or too long; nothing changes then.
    pub fn register(&self, owner: ConnId, uid: Uid, addr: Addr) -> Result<Option<Addr>, RegistryError> {
        if uid.name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        if uid.name.len() > MAX_NAME_LEN {
            return Err(RegistryError::NameTooLong { len: uid.name.len(), max: MAX_NAME_LEN });
        }
        let mut st = self.lock();
        let previous = st.entries.insert(uid.clone(), Slot { addr, owner });
        if let Some(prev) = &previous {
            if prev.owner != owner {
                st.disown(prev.owner, &uid);
            }
        }
        st.owned.entry(owner).or_default().insert(uid.clone());
        if let Some(w) = st.waiting.get(&uid.name) {
            w.notify.notify_waiters();
        }
        Ok(previous.map(|slot| slot.addr))
    }

    /// Removes the entry of `uid`, whichever connection registered it.
    ///
    /// Returns the removed entry, or `None` if the uid was not registered (which is
    /// not an error: unregistering is idempotent).
    pub fn unregister(&self, uid: &Uid) -> Option<Entry> {
        let mut st = self.lock();
        let slot = st.entries.remove(uid)?;
        st.disown(slot.owner, uid);
        Some(Entry { uid: uid.clone(), addr: slot.addr })
    }

    /// Removes every entry owned by connection `owner` (it closed or broke).
    ///
    /// Returns the removed entries, sorted by name then uid; empty if it owned none.
    pub fn remove_connection(&self, owner: ConnId) -> Vec<Entry> {
        let mut st = self.lock();
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

    /// The entries registered under `name`, sorted by uid; empty if there are none.
    pub fn find(&self, name: &str) -> Vec<Entry> {
        self.lock().find(name)
    }

    /// Every entry, sorted by name then uid.
    pub fn list(&self) -> Vec<Entry> {
        self.lock()
            .entries
            .iter()
            .map(|(uid, slot)| Entry { uid: uid.clone(), addr: slot.addr.clone() })
            .collect()
    }

    /// The number of registered entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one entry exists under `name` and returns the entries
    /// (immediately if there already is one). Never fails; it may wait forever.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future removes its waiter (see
    /// [`Registry::waiter_count`]).
    pub async fn wait_for(&self, name: &str) -> Vec<Entry> {
        let waiter = Waiter::new(self, name);
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Enabled before looking, so a registration between the look and the
            // await is not missed.
            notified.as_mut().enable();
            let found = self.find(name);
            if !found.is_empty() {
                return found;
            }
            notified.await;
        }
    }

    /// The number of [`Registry::wait_for`] calls currently waiting, over all names.
    pub fn waiter_count(&self) -> usize {
        self.lock().waiting.values().map(|w| w.count).sum()
    }
}

/// Counts one waiter of one name for as long as it lives.
struct Waiter<'a> {
    registry: &'a Registry,
    name: &'a str,
    notify: Arc<Notify>,
}

impl<'a> Waiter<'a> {
    fn new(registry: &'a Registry, name: &'a str) -> Self {
        let mut st = registry.lock();
        let w = st
            .waiting
            .entry(name.to_owned())
            .or_insert_with(|| Waiting { notify: Arc::new(Notify::new()), count: 0 });
        w.count += 1;
        let notify = w.notify.clone();
        drop(st);
        Waiter { registry, name, notify }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut st = self.registry.lock();
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
    fn reregistering_replaces_address_and_owner() {
        let r = Registry::new();
        let (c1, c2) = (r.connection(), r.connection());
        assert_eq!(r.register(c1, uid("a", "1"), addr(1)), Ok(None));
        assert_eq!(r.register(c2, uid("a", "1"), addr(2)), Ok(Some(addr(1))));
        assert_eq!(r.find("a"), vec![Entry { uid: uid("a", "1"), addr: addr(2) }]);
        // The old connection no longer owns it.
        assert!(r.remove_connection(c1).is_empty());
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove_connection(c2).len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn refuses_bad_names() {
        let r = Registry::new();
        let c = r.connection();
        assert_eq!(r.register(c, uid("", "1"), addr(1)), Err(RegistryError::EmptyName));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(r.register(c, uid(&long, "1"), addr(1)), Err(RegistryError::NameTooLong { .. })));
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
        assert_eq!(r.unregister(&uid("b", "1")).map(|e| e.addr), Some(addr(2)));
        assert_eq!(r.unregister(&uid("b", "1")), None);
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
        assert_eq!(r.wait_for("now").await.len(), 1);
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
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
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
}
