//! The `arbiter` daemon: a standalone name registry for a cluster of actors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actor_arbiter::server::serve_tls;
use actor_arbiter::{ArbiterConfig, DEFAULT_ADDR, ENV_ADDR, ENV_LOG, ENV_TOKEN};
use actor_transport::admission::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES, ENV_MAX_CONNECTIONS};
use actor_transport::{
    Addr, AdmissionConfig, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, Listener, Secret, TlsConfig, Uid,
    check_exposure, default_token_path, load_or_create_token,
};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// A standalone arbiter: the name registry actors register with and look each
/// other up in.
#[derive(Debug, Parser)]
#[command(
    name = "arbiter",
    version,
    after_help = "The cluster token may also be given as hex in the ACTOR_TOKEN environment variable; \
                  --token-file takes precedence. Without either (and without TLS) the arbiter requires \
                  the per-user secret that actors of the same user use by default (ACTOR_TOKEN_FILE, \
                  else $XDG_RUNTIME_DIR/actor/token, else /tmp/actor-<uid>/token); --open admits any \
                  client instead.\n\n\
                  With --tls-ca, --tls-cert and --tls-key (all three, or none) the arbiter accepts only \
                  mutual-TLS connections (clients must present a certificate signed by the CA), and \
                  may then bind a non-loopback address."
)]
struct Args {
    /// Address to listen on: tcp://host:port or unix:///path.
    #[arg(long, env = ENV_ADDR, default_value = DEFAULT_ADDR)]
    bind: Addr,

    /// File holding the cluster token as hex; clients must prove they hold it.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Admit any client without a token (when neither --token-file nor
    /// ACTOR_TOKEN is given): every local user may then list and register
    /// names here. Without it the per-user secret is required.
    #[arg(long, conflicts_with = "token_file")]
    open: bool,

    /// Log filter, as for tracing's EnvFilter (e.g. `info`, `actor_arbiter=debug`).
    #[arg(long, env = ENV_LOG, default_value = "info")]
    log: String,

    /// Allow binding an address other than loopback or a Unix socket without TLS.
    /// Traffic is then not encrypted and clients are not authenticated by
    /// certificate; prefer the --tls-* options.
    #[arg(long)]
    insecure_non_loopback: bool,

    /// PEM file of the CA certificate(s): clients must present a certificate
    /// signed by it (mutual TLS).
    #[arg(long, value_name = "PATH", env = ENV_TLS_CA)]
    tls_ca: Option<PathBuf>,

    /// PEM file of the arbiter's certificate chain, signed by the CA, naming the
    /// host clients dial (IP or DNS SAN).
    #[arg(long, value_name = "PATH", env = ENV_TLS_CERT)]
    tls_cert: Option<PathBuf>,

    /// PEM file of the arbiter's private key.
    #[arg(long, value_name = "PATH", env = ENV_TLS_KEY)]
    tls_key: Option<PathBuf>,

    /// Clients must finish the handshake within this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    handshake_timeout_ms: u64,

    /// The most client connections kept open; more are closed at once.
    #[arg(long, value_name = "N", env = ENV_MAX_CONNECTIONS, default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(usize))]
    max_connections: usize,

    /// The most clients in the handshake at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_HANDSHAKES)]
    max_handshakes: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match EnvFilter::try_new(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("arbiter: invalid log filter `{}`: {e}", args.log);
            return ExitCode::from(2);
        }
    };
    use std::io::IsTerminal;
    // Colours only for a person at a terminal who did not opt out.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();

    let tls = match load_tls(&args) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("arbiter: {msg}");
            return ExitCode::from(2);
        }
    };
    if tls.is_some() && matches!(args.bind, Addr::Unix(_)) {
        eprintln!(
            "arbiter: TLS is for TCP addresses, but --bind is the Unix socket {}; bind a tcp:// address or \
             drop the TLS options",
            args.bind
        );
        return ExitCode::from(2);
    }
    if let Err(e) = check_exposure(&args.bind, tls.is_some(), args.insecure_non_loopback) {
        eprintln!(
            "arbiter: {e}. Pass --tls-ca, --tls-cert and --tls-key (or set {ENV_TLS_CA}, {ENV_TLS_CERT} and \
             {ENV_TLS_KEY}) to accept only mutual-TLS clients, or --insecure-non-loopback to bind it anyway \
             on a trusted network."
        );
        return ExitCode::from(2);
    }
    let token = match load_token(&args, tls.is_some()) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("arbiter: {msg}");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arbiter: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, token, tls))
}

/// The TLS configuration from the three `--tls-*` options (or their environment
/// variables): all three or none. An empty value counts as absent.
fn load_tls(args: &Args) -> Result<Option<TlsConfig>, String> {
    let given = |p: &Option<PathBuf>| p.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned();
    let (ca, cert, key) = (given(&args.tls_ca), given(&args.tls_cert), given(&args.tls_key));
    match (ca, cert, key) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => {
            TlsConfig::from_pem_files(&ca, &cert, &key).map(Some).map_err(|e| e.to_string())
        }
        (ca, cert, key) => {
            let missing: Vec<String> = [
                (ca.is_none(), "--tls-ca", ENV_TLS_CA),
                (cert.is_none(), "--tls-cert", ENV_TLS_CERT),
                (key.is_none(), "--tls-key", ENV_TLS_KEY),
            ]
            .into_iter()
            .filter(|(missing, ..)| *missing)
            .map(|(_, flag, var)| format!("{flag} (or {var})"))
            .collect();
            Err(format!(
                "incomplete TLS configuration: missing {}; give all of --tls-ca, --tls-cert and --tls-key, \
                 or none",
                missing.join(" and ")
            ))
        }
    }
}

/// The token clients must prove: from `--token-file` or `ACTOR_TOKEN`; else,
/// unless TLS or `--open` stands in for it, the per-user secret, so that a
/// default arbiter admits the same programs a default actor does.
fn load_token(args: &Args, tls: bool) -> Result<Option<Secret>, String> {
    let (hex, origin) = if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        (text, format!("the token file {}", path.display()))
    } else {
        match std::env::var(ENV_TOKEN) {
            // Set but empty is an error too: it must not silently mean "admit anyone".
            Ok(v) => (v, ENV_TOKEN.to_owned()),
            Err(std::env::VarError::NotPresent) if tls || args.open => return Ok(None),
            Err(std::env::VarError::NotPresent) => {
                let path = default_token_path();
                return load_or_create_token(&path)
                    .map(Some)
                    .map_err(|e| format!("the per-user secret {}: {e}", path.display()));
            }
            Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{ENV_TOKEN} is not valid hex")),
        }
    };
    Secret::parse_hex(hex.trim()).map(Some).map_err(|e| format!("{origin}: {e}"))
}

async fn run(args: Args, token: Option<Secret>, tls: Option<TlsConfig>) -> ExitCode {
    let listener = match Listener::bind(&args.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("arbiter: cannot listen on {}: {e}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    let (mut sigterm, mut sigint) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("arbiter: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout is not fatal: the address is also logged.
        let _ = writeln!(out, "arbiter listening on {}", listener.local_addr());
        let _ = out.flush();
    }
    let config = ArbiterConfig {
        uid: Uid::new("arbiter"),
        token,
        handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
        admission: AdmissionConfig {
            max_connections: args.max_connections,
            max_handshakes: args.max_handshakes,
        },
    };
    let shutdown = CancellationToken::new();
    if tls.is_some() {
        tracing::info!("mutual TLS required of every client");
    }
    let mut server = tokio::spawn(serve_tls(listener, config, tls, shutdown.clone()));
    let finished = tokio::select! {
        res = &mut server => Some(res),
        _ = sigterm.recv() => {
            tracing::info!("SIGTERM received, shutting down");
            None
        }
        _ = sigint.recv() => {
            tracing::info!("SIGINT received, shutting down");
            None
        }
    };
    shutdown.cancel();
    let outcome = match finished {
        Some(res) => res,
        None => server.await,
    };
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("arbiter: stopped after an error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("arbiter: the server task failed: {e}");
            ExitCode::FAILURE
        }
    }
}
