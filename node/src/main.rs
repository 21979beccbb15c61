//! `tresor-node`: see [`tresor_node::cli`].

fn main() -> std::process::ExitCode {
    tresor_node::cli::main()
}
