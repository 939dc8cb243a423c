//! The `authgate` binary: CLI → load config → init logging → serve.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::config::{self, Config};
use authgate::{certs, logging, server};

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
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
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
    }
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
    if let Err(e) = authgate::gateway::forward::Upstreams::new(&cfg.upstream) {
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
    logging::init(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let server = match server::Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return fail(&e.to_string());
            }
        };
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
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
