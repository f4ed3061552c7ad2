//! `gpt-load`: a drop-in, much faster GPT-Load v1. Reads `.env` and the environment, then runs
//! the engine shards and the control plane in one process.

mod allocator;
mod api;
mod app;
mod config;
mod encryption;
mod i18n;
mod logs;
mod settings;
mod state;
mod tasks;
mod validation;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: allocator::Mimalloc = allocator::Mimalloc;

/// AI API gateway with key pools, compatible with GPT-Load v1.
#[derive(Parser)]
#[command(name = "gpt-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    MigrateKeys(encryption::migrate::MigrateKeysArgs),
}

fn main() {
    let cli = Cli::parse();
    let _ = dotenvy::dotenv();
    if let Some(Command::MigrateKeys(args)) = cli.command {
        std::process::exit(encryption::migrate::main(args));
    }
    let config = match config::from_env(|name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gpt-load: configuration error: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("control")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpt-load: cannot start the control plane runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(app::run(config)) {
        eprintln!("gpt-load: {e}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &config::Config) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let file = config.log_enable_file.then(|| {
        let path = std::path::Path::new(&config.log_file_path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let file_layer = file.flatten().map(|f| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
    });
    let json = config.log_format == "json";
    let registry = tracing_subscriber::registry().with(filter).with(file_layer);
    if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init();
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}
