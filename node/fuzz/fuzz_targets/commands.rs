#![no_main]

use tresor_node::meta::Command;

libfuzzer_sys::fuzz_target!(|commands: Vec<Command>| tresor_node::fuzzing::commands(&commands));
