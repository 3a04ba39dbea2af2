//! `ferrite`: serve the OpenAI API, generate text, embed texts, generate images, benchmark a
//! model.
//! Output goes to stdout; logs go to stderr.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ferrite", version, about = "LLM, embedding and image inference engine")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible HTTP API.
    Serve(cli::serve::ServeArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API.
    Openapi,
    /// Print the continuation of a prompt (greedy when --temperature is 0).
    Generate(cli::generate::GenerateArgs),
    /// Print the embedding of each text (an embedding model), one JSON array per line.
    Embed(cli::embed::EmbedArgs),
    /// Generate images of a prompt with a diffusers FLUX folder and write them as PNG files.
    Image(cli::image::ImageArgs),
    /// Measure prefill and decode speed; prints one JSON line.
    Bench(cli::bench::BenchArgs),
    /// List the devices each backend (cpu, wgpu, cuda) finds, one per line.
    Devices,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Serve(a) => cli::serve::run(a),
        Command::Openapi => {
            print!("{}", ferrite::server::openapi::document_text());
            Ok(())
        }
        Command::Generate(a) => cli::generate::run(a),
        Command::Embed(a) => cli::embed::run(a),
        Command::Image(a) => cli::image::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Devices => {
            for line in ferrite::devices() {
                println!("{line}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
