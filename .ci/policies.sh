#!/usr/bin/env bash
# Policy checks beyond `cargo test --workspace` (which runs the sandbox tests on real wasm and proves the
# committed prebuilt components equal a fresh build): the example's own tests and the README's
# "write your own policy" steps, run through the CLI exactly as documented.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown

# Each example policy is its own workspace (what a policy team's repository looks like): its native tests.
examples=(prefer-graviton savings-plans patient-consolidator change-freeze)
for e in "${examples[@]}"; do
  cargo test --manifest-path "examples/policies/$e/Cargo.toml"
done

# The SDK packages for the registry (its README, the contract it generates bindings from, metadata).
cargo package -q -p kestrel-policy-sdk --no-verify --allow-dirty

# The README's "write your own policy" steps, through the CLI.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for e in "${examples[@]}"; do
  cargo run -q -p kestrel -- policy build "examples/policies/$e" -o "$out/$e.wasm"
  # Every fixture file of the example: good settings and cases, and settings the policy must refuse.
  for f in examples/policies/$e/fixtures*.yaml; do
    cargo run -q -p kestrel -- policy test "$out/$e.wasm" "$f"
  done
  # At production sizes no call may fall back (time out, trap, ...). The deadline-share check is for
  # an author's idle machine: CI's is shared, so only a call past its whole deadline fails here.
  cargo run -q -p kestrel -- policy bench "$out/$e.wasm" --iterations 50 --max-deadline-share 1
done
# The SDK is not on the package registry yet: the scaffold depends on this checkout's SDK (by default it
# depends on the SDK's version, for teams with only the `kestrel` binary).
cargo run -q -p kestrel -- policy new --kind ranker --sdk-path sdk "$out/my-ranker"
cargo run -q -p kestrel -- policy build "$out/my-ranker" -o "$out/my-ranker.wasm"
cargo run -q -p kestrel -- policy test "$out/my-ranker.wasm" "$out/my-ranker/fixtures.yaml"
