//! How a host agent is configured: [`AgentConfig`], checked before the
//! agent starts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// The most labels an agent carries.
const MAX_LABELS: usize = 64;
/// The longest host name, label key or label value, in bytes.
const MAX_TEXT: usize = 64;
/// How a host agent runs: the host's name and labels, the programs it may
/// start, and its limits. Pass it to [`run`](super::run).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub(super) host: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) programs: BTreeMap<String, PathBuf>,
    pub(super) child_bind: Option<String>,
    pub(super) max_children: u32,
    pub(super) orphan_grace: Duration,
}

impl AgentConfig {
    /// An agent for the host called `host` (what
    /// [`HostSelector::name`](crate::HostSelector::name) matches), with no
    /// labels, no programs, at most 256 children, and an orphan grace of 1 s.
    pub fn new(host: impl Into<String>) -> Self {
        AgentConfig {
            host: host.into(),
            labels: BTreeMap::new(),
            programs: BTreeMap::new(),
            child_bind: None,
            max_children: 256,
            orphan_grace: Duration::from_secs(1),
        }
    }

    /// Adds label `key=value` (what
    /// [`HostSelector::label`](crate::HostSelector::label) matches).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Allows the program at `path`, under its file name: parents ask for
    /// it by that name. It must be an actor program (one that calls
    /// `actor::run`), built from the same code as the parents that spawn it
    /// here, since remote functions are found by name.
    pub fn allow(self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.allow_as(name, path)
    }

    /// Allows the program at `path` under `name`.
    pub fn allow_as(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.programs.insert(name.into(), path.into());
        self
    }

    /// The host (an IP address or name of this host) its children listen on
    /// and give their parents; default: the host part of the agent's own
    /// listening address.
    pub fn child_bind(mut self, host: impl Into<String>) -> Self {
        self.child_bind = Some(host.into());
        self
    }

    /// The most children it runs at once, for all parents together; a spawn
    /// beyond it is refused.
    pub fn max_children(mut self, max: u32) -> Self {
        self.max_children = max;
        self
    }

    /// How long a child whose parent is lost gets between SIGTERM and
    /// SIGKILL.
    pub fn orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }

    /// Checks the configuration and resolves each program's path.
    pub(super) fn validated(mut self) -> std::result::Result<Self, String> {
        text("the host name", &self.host)?;
        if self.labels.len() > MAX_LABELS {
            return Err(format!("{} labels; at most {MAX_LABELS}", self.labels.len()));
        }
        for (k, v) in &self.labels {
            text("a label's key", k)?;
            if k.contains('=') {
                return Err(format!("the label key `{k}` contains `=`"));
            }
            text(&format!("the value of label `{k}`"), v)?;
        }
        if self.programs.is_empty() {
            return Err("no program is allowed: allow at least one (`--allow PATH`)".into());
        }
        for (name, path) in &mut self.programs {
            text("a program's name", name)?;
            if name.contains('/') {
                return Err(format!("the program name `{name}` contains `/`"));
            }
            *path = executable(path)?;
        }
        if self.max_children == 0 {
            return Err("max_children is 0: the agent could start nothing".into());
        }
        Ok(self)
    }
}

/// Refuses empty, overlong or unprintable names.
fn text(what: &str, s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_TEXT {
        return Err(format!("{what} `{s}` is longer than {MAX_TEXT} bytes"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} {s:?} contains whitespace or a control character"));
    }
    Ok(())
}

/// The absolute path of an executable regular file.
fn executable(path: &std::path::Path) -> std::result::Result<PathBuf, String> {
    let full = std::fs::canonicalize(path).map_err(|e| format!("cannot allow {}: {e}", path.display()))?;
    let meta = std::fs::metadata(&full).map_err(|e| format!("cannot allow {}: {e}", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("cannot allow {}: it is not an executable file", path.display()));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked() {
        let sh = std::path::Path::new("/bin/sh");
        assert!(AgentConfig::new("h1").allow(sh).validated().is_ok());
        let e = |c: AgentConfig| c.validated().unwrap_err();
        assert!(e(AgentConfig::new("h1")).contains("no program is allowed"));
        assert!(e(AgentConfig::new("two words").allow(sh)).contains("whitespace"));
        assert!(e(AgentConfig::new("").allow(sh)).contains("the host name is empty"));
        assert!(e(AgentConfig::new("h1").allow(sh).label("a=b", "c")).contains("contains `=`"));
        assert!(e(AgentConfig::new("h1").allow("/nonexistent/prog")).contains("/nonexistent/prog"));
        assert!(e(AgentConfig::new("h1").allow("/etc/passwd")).contains("not an executable file"));
        assert!(e(AgentConfig::new("h1").allow_as("a/b", sh)).contains("contains `/`"));
        assert!(e(AgentConfig::new("h1").allow(sh).max_children(0)).contains("max_children is 0"));
    }
}
