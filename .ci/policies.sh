#!/usr/bin/env bash
# Policy checks, called by .ci/run: default policies and SDK unit tests, the sandbox and example tests
# with real wasm, and proof that the committed prebuilt components equal a fresh build.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown

# The policies' logic, natively (including the example's native test harness).
cargo test -p kestrel-policy-sdk -p kestrel-default-ranker -p kestrel-default-consolidator -p kestrel-default-budgeter
cargo test --manifest-path examples/policies/prefer-graviton/Cargo.toml

# The runtime: unit tests, then real wasm (defaults embedded by host/build.rs, test policies built by
# tests/build.rs, the example built with `kestrel policy build`).
cargo test -p kestrel --lib policy::
cargo test -p kestrel-tests --test integration policy::

# policies/prebuilt/*.wasm (the fallback of machines without the wasm target) == a fresh build.
cargo run -q -p kestrel -- policy verify-prebuilt

# The README's "write your own policy" steps, through the CLI.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run -q -p kestrel -- policy build examples/policies/prefer-graviton -o "$out/prefer-graviton.wasm"
cargo run -q -p kestrel -- policy test "$out/prefer-graviton.wasm" examples/policies/prefer-graviton/fixtures.yaml
cargo run -q -p kestrel -- policy new --kind ranker "$out/my-ranker"
cargo run -q -p kestrel -- policy build "$out/my-ranker" -o "$out/my-ranker.wasm"
cargo run -q -p kestrel -- policy test "$out/my-ranker.wasm" "$out/my-ranker/fixtures.yaml"
