//! One log setting for the whole tree.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber with `filter` (`warn` when `None`). Does
/// nothing if the program installed its own subscriber first.
///
/// Colours only when stderr is a terminal and `NO_COLOR` is unset or empty:
/// escape codes in a file or a pipe are noise for the reader and a way to
/// hide text from whoever views it later.
pub(crate) fn init(filter: Option<&str>) {
    let filter = EnvFilter::try_new(filter.unwrap_or("warn")).unwrap_or_else(|e| {
        eprintln!("actor: invalid log filter ({e}); using `warn`");
        EnvFilter::new("warn")
    });
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    // Err means a subscriber is already installed, which is the program's choice.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
