//! The `ilp-router` command.

use clap::{Parser, Subcommand, ValueEnum};
use ilp_router::decode::{self, Kind};
use std::io::Read;
use std::process::ExitCode;

/// An Interledger (ILPv4) router appliance.
#[derive(Debug, Parser)]
#[command(name = "ilp-router", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode one ILP or BTP packet given in hex and print it as JSON.
    ///
    /// Prints one JSON object on stdout. For bytes that do not decode it prints
    /// {"error":"<category>","detail":"..."} and exits 1.
    Decode {
        /// Which codec to use.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The packet as hex, or `-` to read the hex from stdin.
        hex: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    /// An ILPv4 Prepare, Fulfill or Reject.
    Ilp,
    /// A BTP 2.0 packet.
    Btp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { kind, hex } => run_decode(kind, &hex),
    }
}

fn run_decode(kind: KindArg, hex: &str) -> ExitCode {
    let text = if hex == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("ilp-router decode: cannot read stdin: {e}");
            return ExitCode::from(2);
        }
        text
    } else {
        hex.to_owned()
    };
    let bytes = match decode::parse_hex(&text) {
        Ok(bytes) => bytes,
        Err(detail) => {
            println!(
                "{}",
                serde_json::json!({ "error": "invalid_hex", "detail": detail })
            );
            return ExitCode::from(1);
        }
    };
    let kind = match kind {
        KindArg::Ilp => Kind::Ilp,
        KindArg::Btp => Kind::Btp,
    };
    match decode::decode(kind, &bytes) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", decode::error_json(error));
            ExitCode::from(1)
        }
    }
}
