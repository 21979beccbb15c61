//! The `tresor-node` command line, built inside this package so that its
//! integration tests can find it (`CARGO_BIN_EXE_tresor-test-node`).

fn main() -> std::process::ExitCode {
    tresor_node::cli::main()
}
