//! One log setting for the whole tree.

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber with `filter` (`warn` when `None`). Does
/// nothing if the program installed its own subscriber first.
pub(crate) fn init(filter: Option<&str>) {
    let filter = EnvFilter::try_new(filter.unwrap_or("warn")).unwrap_or_else(|e| {
        eprintln!("actor: invalid log filter ({e}); using `warn`");
        EnvFilter::new("warn")
    });
    // Err means a subscriber is already installed, which is the program's choice.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
