//! `tresor`: the user command line (put, get, ls, stat, rm, verify).

fn main() -> std::process::ExitCode {
    tresor_client::cli::main()
}
