//! `trailwatch run`: the live service (see the library's `run` module).

use anyhow::Result;
use clap::ValueEnum;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Check the configuration (values, paths, rules) and that the source and sinks answer
    /// within `service.startup_timeout`, print what was checked, and exit: 0 if `run` would
    /// start, 2 (with the key and file at fault) if not.
    #[arg(long)]
    pub(crate) check: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

pub(crate) fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match a.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let config = trailwatch::config::Config::load(&a.config)?;
    if a.check {
        let lines = trailwatch::run::check(&config)?;
        let mut out = io::stdout().lock();
        for line in lines {
            writeln!(out, "ok  {line}")?;
        }
        writeln!(
            out,
            "{}: trailwatch run can start with this configuration",
            a.config.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    trailwatch::run::run(config)?;
    Ok(ExitCode::SUCCESS)
}
