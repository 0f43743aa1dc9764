//! The `trailwatch` command line: replay, check, explain, test, run.

mod cli;

use clap::{Parser, Subcommand};
use cli::replay::{cmd_replay, ReplayArgs};
use cli::rules::{cmd_check, cmd_explain, cmd_test, CheckArgs, ExplainArgs, TestArgs};
use cli::run::{cmd_run, RunArgs};
use std::io;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "trailwatch",
    version,
    about = "Sigma detection for AWS CloudTrail: live on SQS or Kafka, and over history"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate historical CloudTrail input and write alerts (or hits) as JSON lines.
    Replay(Box<ReplayArgs>),
    /// Validate and lint rule files; exit 2 if any rule is invalid.
    Check(CheckArgs),
    /// Say for each rule whether it matches an event, and which entries decided it.
    Explain(ExplainArgs),
    /// Run every rule's fixtures (`trailwatch.tests`); fail on a wrong verdict or a rule without any.
    Test(TestArgs),
    /// Run the live service: SQS or Kafka in, deduplicated alerts to SNS and/or a file, /metrics.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => cmd_replay(*a),
        Command::Check(a) => cmd_check(a),
        Command::Explain(a) => cmd_explain(a),
        Command::Test(a) => cmd_test(a),
        Command::Run(a) => cmd_run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "trailwatch: {}",
                trailwatch::escape::line(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
