//! The `switchboard` binary: parse settings, start logging, build the node, run until Ctrl-C or
//! SIGTERM (then drain). `switchboard token` prints a token for trying things out.

use anyhow::Context;
use switchboard::config::{Cli, Command, parse_ttl};
use switchboard::{Application, auth};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::load();
    switchboard::telemetry::init(cli.config.log_format);
    match cli.command {
        Some(Command::Token(args)) => {
            let ttl = parse_ttl(&args.ttl)?;
            let keys = auth::Keys::load(&cli.config)?;
            let token = keys
                .verifier
                .issue(&args.id, args.role, args.name.as_deref(), ttl)
                .context("tokens can only be minted with an HS* secret")?;
            println!("{token}");
            Ok(())
        }
        None => {
            let app = Application::build(cli.config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
