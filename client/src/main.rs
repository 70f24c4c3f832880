//! `lemal`: the Lemal client command line.

fn main() -> std::process::ExitCode {
    lemal_client::cli::main()
}
