//! Which host a nursery spawns an actor on: [`HostSelector`], and choosing
//! one among the agents that match it.

use std::fmt;

use actor_transport::{Addr, Uid};

use super::wire::HostInfo;

/// Which host an actor is spawned on, through that host's agent (see
/// [`ActorBuilder::on_host`](crate::ActorBuilder::on_host)). A plain string
/// converts to [`HostSelector::name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSelector(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Name(String),
    Label(String, String),
    Addr(Addr),
}

impl HostSelector {
    /// The host whose agent was started as `name` (`actor agent --host NAME`).
    /// Spawning fails if no agent, or more than one, has that name.
    pub fn name(name: impl Into<String>) -> Self {
        HostSelector(Kind::Name(name.into()))
    }

    /// Any host whose agent carries label `key=value`; of several, the one
    /// running the fewest children, then the one with the most memory
    /// available, then the first by name.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Self {
        HostSelector(Kind::Label(key.into(), value.into()))
    }

    /// The agent listening at `addr`, reached directly rather than through
    /// the arbiter.
    pub fn addr(addr: Addr) -> Self {
        HostSelector(Kind::Addr(addr))
    }

    /// The agent's address, for a selector made with [`HostSelector::addr`].
    pub(crate) fn direct(&self) -> Option<&Addr> {
        match &self.0 {
            Kind::Addr(a) => Some(a),
            _ => None,
        }
    }

    /// Whether choosing weighs the hosts' load, which changes: then every
    /// candidate is asked afresh.
    pub(crate) fn weighs_load(&self) -> bool {
        matches!(self.0, Kind::Label(..))
    }

    /// Whether a host described as `info` is one this selector asks for.
    pub(crate) fn matches(&self, info: &HostInfo) -> bool {
        match &self.0 {
            Kind::Name(n) => info.name == *n,
            Kind::Label(k, v) => info.labels.get(k) == Some(v),
            Kind::Addr(_) => true,
        }
    }

    /// Picks one of `hosts` (each an agent's uid and what it said of its
    /// host); returns its index.
    ///
    /// # Errors
    ///
    /// A message naming the hosts there are, when none matches or a name is
    /// claimed by several agents.
    pub(crate) fn choose(&self, hosts: &[(Uid, HostInfo)]) -> Result<usize, String> {
        let matching: Vec<usize> = (0..hosts.len()).filter(|&i| self.matches(&hosts[i].1)).collect();
        let known = || {
            let mut names: Vec<String> = hosts.iter().map(|(_, h)| describe(h)).collect();
            names.sort();
            if names.is_empty() {
                "no agent answered".to_owned()
            } else {
                format!("agents: {}", names.join(", "))
            }
        };
        match (&self.0, matching.as_slice()) {
            (_, []) => Err(format!("no host agent matches {self} ({})", known())),
            (Kind::Name(n), [_, _, ..]) => {
                let uids: Vec<String> = matching.iter().map(|&i| hosts[i].0.to_string()).collect();
                Err(format!("several agents claim host `{n}`: {}", uids.join(", ")))
            }
            (_, _) => Ok(matching
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    let (x, y) = (&hosts[a].1, &hosts[b].1);
                    x.children
                        .cmp(&y.children)
                        .then(y.memory_available.cmp(&x.memory_available))
                        .then(x.name.cmp(&y.name))
                })
                .unwrap_or(matching[0])),
        }
    }
}

/// A host in one line: its name and labels.
fn describe(h: &HostInfo) -> String {
    if h.labels.is_empty() {
        return format!("`{}`", h.name);
    }
    let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("`{}` [{}]", h.name, labels.join(","))
}

impl fmt::Display for HostSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Name(n) => write!(f, "host `{n}`"),
            Kind::Label(k, v) => write!(f, "label `{k}={v}`"),
            Kind::Addr(a) => write!(f, "the agent at {a}"),
        }
    }
}

impl From<&str> for HostSelector {
    fn from(name: &str) -> Self {
        HostSelector::name(name)
    }
}

impl From<String> for HostSelector {
    fn from(name: String) -> Self {
        HostSelector::name(name)
    }
}

impl From<&String> for HostSelector {
    fn from(name: &String) -> Self {
        HostSelector::name(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn host(name: &str, labels: &[(&str, &str)], children: u32, memory: u64) -> (Uid, HostInfo) {
        let info = HostInfo {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<BTreeMap<_, _>>(),
            cores: 2,
            memory_available: memory,
            memory_total: 1 << 40,
            children,
            programs: vec!["app".into()],
            child_bind: Addr::loopback(0),
        };
        (Uid::new("actor-agent"), info)
    }

    #[test]
    fn a_name_picks_that_host_only() {
        let hosts = [host("h2", &[], 0, 1), host("h3", &[], 0, 9)];
        assert_eq!(HostSelector::from("h3").choose(&hosts), Ok(1));
        assert_eq!(HostSelector::from("h2").choose(&hosts), Ok(0));
    }

    #[test]
    fn no_match_names_the_hosts_there_are() {
        let hosts = [host("h2", &[("zone", "a")], 0, 1), host("h3", &[], 0, 9)];
        let e = HostSelector::name("h9").choose(&hosts).unwrap_err();
        assert_eq!(e, "no host agent matches host `h9` (agents: `h2` [zone=a], `h3`)");
        let e = HostSelector::label("zone", "b").choose(&[]).unwrap_err();
        assert_eq!(e, "no host agent matches label `zone=b` (no agent answered)");
    }

    #[test]
    fn a_name_two_agents_claim_is_refused() {
        let hosts = [host("h2", &[], 0, 1), host("h2", &[], 0, 1)];
        let e = HostSelector::name("h2").choose(&hosts).unwrap_err();
        assert!(e.starts_with("several agents claim host `h2`: actor-agent#"), "{e}");
    }

    #[test]
    fn a_label_picks_the_least_busy_then_the_roomiest() {
        let hosts = [
            host("a", &[("gpu", "1")], 3, 100),
            host("b", &[("gpu", "1")], 1, 10),
            host("c", &[("gpu", "1")], 1, 50),
            host("d", &[], 0, 1000),
        ];
        assert_eq!(HostSelector::label("gpu", "1").choose(&hosts), Ok(2));
        let tied = [host("y", &[("k", "v")], 0, 5), host("x", &[("k", "v")], 0, 5)];
        assert_eq!(HostSelector::label("k", "v").choose(&tied), Ok(1));
    }
}
