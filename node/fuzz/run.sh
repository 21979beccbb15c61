#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each), starting
# from the committed seeds and regression inputs; fails on the first crash
# (the input lands in node/fuzz/artifacts/<target>/).
#
# Works on the stable toolchain: cargo-fuzz needs nightly-only compiler
# flags, which RUSTC_BOOTSTRAP=1 allows for this build only. Without
# AddressSanitizer (`-s none`): the code under test is safe Rust, and the
# build is much faster.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "$work/$target"
    inputs=("$work/$target")
    for dir in "seeds/$target" "regressions/$target"; do
        if [ -d "$dir" ]; then inputs+=("$dir"); fi
    done
    echo "== fuzz $target for ${seconds}s"
    log="$work/$target.log"
    if ! cargo fuzz run -s none -O "$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed; the input is under node/fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE' "$log" || true
done
