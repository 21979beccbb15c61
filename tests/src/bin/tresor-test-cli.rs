//! The `tresor` user command line, built inside this package so that its
//! integration tests can run it (`CARGO_BIN_EXE_tresor-test-cli`).

fn main() -> std::process::ExitCode {
    tresor_client::cli::main()
}
