//! The `authgate` binary: CLI → load config → init logging → serve.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::config::{self, Config};
use authgate::{certs, logging, server};

/// mimalloc: per-thread free lists suit a proxy's many small, short-lived allocations
/// (header maps, buffers); glibc malloc cost ≈ 5 % of CPU on the load benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status when authgate cannot start (bad config, certificates, ports).
const EXIT_CANNOT_START: u8 = 2;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "Authenticating reverse proxy and OAuth 2.0 authorization server"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "AUTHGATE_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and certificates, print a summary, and exit.
    CheckConfig,
    /// Probe `/healthz` (for container HEALTHCHECKs): exit 0 if it answers 200 within
    /// the timeout, 1 otherwise.
    Healthcheck {
        /// The URL to probe; by default `/healthz` on `metrics.listen`, else on
        /// `server.http` (plain HTTP only).
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
    /// OAuth clients kept in the store.
    Client {
        #[command(subcommand)]
        action: ClientAction,
    },
    /// Issued tokens (listed by hash; values are never stored).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Users of the authorize page.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Read a password on standard input and print its argon2id hash for
    /// `[[user]] password_hash`.
    HashPassword,
    /// Create a user in the store; the password is read on standard input.
    Add {
        #[arg(long)]
        name: String,
        /// What the user may grant (default: anything the client may have).
        #[arg(long)]
        scopes: Option<String>,
        /// A bound resource, key=value (repeat): account_id=3r4s3, location_name=Paris.
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Change a user's password (read on standard input).
    Passwd { name: String },
    /// List users in the store (users in the config file are not listed).
    List,
    /// Remove a user; tokens acting for them are revoked.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ClientAction {
    /// Create a client and print its secret once.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Allowed grant (repeat): client_credentials, refresh_token.
        #[arg(long = "grant", default_values_t = ["client_credentials".to_string()])]
        grants: Vec<String>,
        /// Scope the client may be granted, e.g. "usage.r,account.r,links.wd".
        #[arg(long, default_value = "")]
        scopes: String,
        /// Registered redirect URI (repeat).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Access token lifetime ("1h", "never"); default oauth.access_token_ttl.
        #[arg(long)]
        access_token_ttl: Option<String>,
        /// Issue refresh tokens where the grant allows.
        #[arg(long)]
        refresh_tokens: bool,
        /// Keep refresh tokens valid after use (default: rotate them).
        #[arg(long)]
        no_rotate: bool,
        /// A public client (no secret).
        #[arg(long)]
        public: bool,
        /// The user or account this client acts for.
        #[arg(long)]
        subject: Option<String>,
    },
    /// List clients in the store (clients in the config file are not listed).
    List,
    /// Remove a client and revoke its tokens.
    Remove { id: String },
    /// Replace a client's secret and print the new one once.
    RotateSecret { id: String },
    /// Read a secret on standard input and print its `sha256:…` hash for `secret_hash`.
    HashSecret,
}

#[derive(Subcommand)]
enum TokenAction {
    /// List tokens, newest first.
    List {
        #[arg(long)]
        client: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Revoke a token (its value, or the hash shown by `token list`).
    Revoke { token: String },
}

#[derive(Subcommand)]
enum CertsAction {
    /// Write a self-signed certificate and key (PEM) for local development.
    Generate {
        /// Certificate file.
        #[arg(long, default_value = "certs/dev-cert.pem")]
        cert: PathBuf,
        /// Private key file (written with mode 0600).
        #[arg(long, default_value = "certs/dev-key.pem")]
        key: PathBuf,
        /// Names the certificate is valid for (repeat the flag).
        #[arg(long = "name", default_values_t = certs::DEV_NAMES.map(String::from))]
        names: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::Healthcheck { url, timeout } => healthcheck(&cli.config, url, timeout),
        Command::Certs {
            action:
                CertsAction::Generate {
                    cert,
                    key,
                    names,
                    force,
                },
        } => match certs::generate(&cert, &key, &names, force) {
            Ok(()) => {
                println!(
                    "wrote {} and {} (self-signed, for {})",
                    cert.display(),
                    key.display(),
                    names.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Command::Client {
            action: ClientAction::HashSecret,
        } => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim_end().is_empty() {
                return fail("expected a secret on standard input");
            }
            let hash = authgate::oauth::client::SecretHash::of(line.trim_end_matches(['\r', '\n']));
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Command::User {
            action: UserAction::HashPassword,
        } => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim_end().is_empty() {
                return fail("expected a password on standard input");
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if let Err(e) = authgate::oauth::password::check_new(password) {
                return fail(&e);
            }
            match authgate::oauth::password::hash(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot hash the password: {e}")),
            }
        }
        Command::User { action } => admin_command(&cli.config, Admin::User(action)),
        Command::Client { action } => admin_command(&cli.config, Admin::Client(action)),
        Command::Token { action } => admin_command(&cli.config, Admin::Token(action)),
    }
}

enum Admin {
    Client(ClientAction),
    Token(TokenAction),
    User(UserAction),
}

/// The first line of standard input (a password), without its line ending.
fn read_stdin_line() -> Option<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    (!line.is_empty()).then_some(line)
}

fn now() -> i64 {
    (authgate::oauth::system_clock())()
}

/// Runs a `client` or `token` command against the configured store. Exit status 1 when
/// the command fails (unknown id, conflict), 2 when the store cannot be opened.
fn admin_command(path: &std::path::Path, cmd: Admin) -> ExitCode {
    use authgate::admin;
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let store = match authgate::store::open_with(&cfg.store.url, &cfg.store.pool).await {
            Ok(s) => s,
            Err(e) => return fail(&format!("store.url: {e}")),
        };
        let codec = match store.token_key().await {
            Ok(k) => authgate::token::Codec::new(k),
            Err(e) => return fail(&format!("store.url: {e}")),
        };
        let result: Result<Vec<String>, admin::AdminError> = match cmd {
            Admin::Client(ClientAction::Add {
                id,
                name,
                grants,
                scopes,
                redirect_uris,
                access_token_ttl,
                refresh_tokens,
                no_rotate,
                public,
                subject,
            }) => {
                if cfg.clients.iter().any(|c| c.id == id) {
                    return command_failed(&format!(
                        "{id:?} is declared in {}; choose another id",
                        cfg.file
                    ));
                }
                let new = admin::NewClient {
                    id: id.clone(),
                    name,
                    settings: authgate::oauth::client::ClientSettings {
                        grants,
                        scopes,
                        redirect_uris,
                        access_token_ttl,
                        refresh_tokens,
                        rotate_refresh_tokens: !no_rotate,
                        public,
                        subject,
                        pkce: None,
                        token_response_extra: false,
                        relaxed_parameters: false,
                        reuse_tokens: false,
                        default_response_type: None,
                        callback_scope: false,
                    },
                };
                admin::add_client(&store, &codec, new, now())
                    .await
                    .map(|secret| match secret {
                        Some(s) => vec![
                            format!("client_id:     {id}"),
                            format!("client_secret: {s}"),
                            "The secret is shown only this once; only its hash is stored.".into(),
                        ],
                        None => vec![format!("client_id: {id} (public: no secret)")],
                    })
            }
            Admin::Client(ClientAction::List) => admin::list_clients(&store).await,
            Admin::Client(ClientAction::Remove { id }) => admin::remove_client(&store, &id, now())
                .await
                .map(|()| vec![format!("removed {id}; its tokens are revoked")]),
            Admin::Client(ClientAction::RotateSecret { id }) => {
                admin::rotate_secret(&store, &codec, &id).await.map(|s| {
                    vec![
                        format!("client_secret: {s}"),
                        "The old secret no longer works. The new one is shown only this once."
                            .into(),
                    ]
                })
            }
            Admin::Client(ClientAction::HashSecret) => Ok(vec![]),
            Admin::Token(TokenAction::List { client, limit }) => {
                admin::list_tokens(&store, client.as_deref(), limit, now()).await
            }
            Admin::User(UserAction::Add {
                name,
                scopes,
                resources,
            }) => {
                if cfg.users.iter().any(|u| u.name == name) {
                    return command_failed(&format!("{name:?} is declared in {}", cfg.file));
                }
                let Some(password) = read_stdin_line() else {
                    return command_failed("expected the password on standard input");
                };
                let new = admin::NewUser {
                    name: name.clone(),
                    password,
                    scopes,
                    resources,
                };
                admin::add_user(&store, new, now())
                    .await
                    .map(|()| vec![format!("added user {name}")])
            }
            Admin::User(UserAction::Passwd { name }) => {
                let Some(password) = read_stdin_line() else {
                    return command_failed("expected the new password on standard input");
                };
                admin::set_password(&store, &name, &password)
                    .await
                    .map(|()| vec![format!("password of {name} changed")])
            }
            Admin::User(UserAction::List) => admin::list_users(&store).await,
            Admin::User(UserAction::Remove { name }) => {
                admin::remove_user(&store, &name, now()).await.map(|()| {
                    vec![format!(
                        "removed {name}; tokens acting for them are revoked"
                    )]
                })
            }
            Admin::User(UserAction::HashPassword) => Ok(vec![]),
            Admin::Token(TokenAction::Revoke { token }) => {
                admin::revoke_token(&store, &token, now())
                    .await
                    .map(|found| {
                        vec![if found {
                            "revoked".to_string()
                        } else {
                            "no such token".to_string()
                        }]
                    })
            }
        };
        match result {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => command_failed(&e.to_string()),
        }
    })
}

fn command_failed(message: &str) -> ExitCode {
    eprintln!("authgate: {message}");
    ExitCode::from(1)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("authgate: {message}");
    ExitCode::from(EXIT_CANNOT_START)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(tls) = &cfg.tls {
        let missing = !tls.cert.exists() && !tls.key.exists();
        if missing && tls.self_signed_if_missing {
            println!(
                "tls: {} and {} will be generated (self-signed) at start",
                tls.cert.display(),
                tls.key.display()
            );
        } else if let Err(e) = authgate::tls::server_config(tls) {
            return fail(&e.to_string());
        }
    }
    if let Err(e) = authgate::gateway::forward::Upstreams::new(&cfg.upstream, 1) {
        return fail(&e.to_string());
    }
    println!("{}: ok", cfg.file);
    let s = &cfg.server;
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    println!(
        "  https: {}   http: {} ({:?})",
        show(s.https),
        show(s.http),
        s.http_mode
    );
    println!("  store: {}", authgate::store::redact_url(&cfg.store.url));
    println!(
        "  secrets keys: {}",
        cfg.oauth
            .secrets
            .as_ref()
            .map_or("none".to_string(), |ring| {
                let ids: Vec<&str> = ring.ids().collect();
                format!("{} (the first seals)", ids.join(", "))
            })
    );
    let m = &cfg.metrics;
    println!(
        "  metrics: {}   reload: {}   forward-auth: {}",
        match (m.enabled, m.listen) {
            (false, _) => "off".to_string(),
            (true, Some(a)) => format!("{a}{}", m.path),
            (true, None) => format!("{} on the main listeners", m.path),
        },
        cfg.reload.watch.map_or("SIGHUP only".to_string(), |d| {
            format!("SIGHUP, files every {}", humantime::format_duration(d))
        }),
        cfg.forward_auth.path.as_deref().unwrap_or("off"),
    );
    for r in &cfg.routes {
        let ups: Vec<String> = r.upstreams.iter().map(|u| u.to_string()).collect();
        println!(
            "  route {}{} -> {}{}",
            r.host.as_deref().unwrap_or(""),
            r.path,
            ups.join(", "),
            if r.public { " (public)" } else { "" }
        );
    }
    ExitCode::SUCCESS
}

fn serve(path: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    // Flushes buffered log lines when `serve` returns.
    let _log_writer = logging::init(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        // Before anything slow: a SIGHUP during startup must not end the process (its
        // default action); it is answered with a reload once serving.
        let hangups = hangup_signals();
        let server = match server::Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return fail(&e.to_string());
            }
        };
        reload_on_sighup(hangups, server.reloader());
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// Takes over SIGHUP (`None` if the handler cannot be installed).
fn hangup_signals() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup())
            .inspect_err(|e| {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload by file change only")
            })
            .ok()
    }
}

/// Reloads the configuration on every SIGHUP.
fn reload_on_sighup(hangups: Hangups, reloader: std::sync::Arc<authgate::reload::Reloader>) {
    #[cfg(unix)]
    if let Some(mut hup) = hangups {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The outcome is logged by the reloader.
                let _ = reloader.reload("SIGHUP").await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (hangups, reloader);
}

/// `authgate healthcheck`.
fn healthcheck(
    path: &std::path::Path,
    url: Option<String>,
    timeout: std::time::Duration,
) -> ExitCode {
    let url = match url {
        Some(u) => u,
        None => {
            let cfg = match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("authgate healthcheck: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(mut addr) = cfg.metrics.listen.or(cfg.server.http) else {
                eprintln!("authgate healthcheck: set metrics.listen or server.http, or pass --url");
                return ExitCode::FAILURE;
            };
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}{}", authgate::health::HEALTHZ)
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authgate healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(authgate::health::probe(&url, timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("authgate healthcheck: {url}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
