#!/usr/bin/env bash
# Release tarballs: one per program, each holding the release binary, its example
# configurations, its systemd unit and Kubernetes manifest, and the operator documentation;
# plus SHA256SUMS over the tarballs. Installing from them needs no Rust toolchain.
#
#   scripts/package.sh [--out DIR] [--bin-dir DIR] [--target TRIPLE]
#
#   --out DIR       where the tarballs go (default dist/)
#   --bin-dir DIR   take webhook-relay and webhook-connector from DIR instead of building them
#                   (for instance binaries built elsewhere, or a debug build to try this script)
#   --target TRIPLE cross-compile for TRIPLE (the toolchain for it must be installed); also
#                   names the tarballs (default: the host's triple)
#
# The build is `cargo build --release --locked` with every connector module (feature `full`),
# niced, with CARGO_BUILD_JOBS jobs (default 2). Layout of webhook-relay-VERSION-TRIPLE.tar.gz:
#   bin/webhook-relay  examples/  systemd/  kubernetes/  docs/  README.md
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist
bin_dir=
target=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml" >&2; exit 1; }
if [ -z "$target" ]; then
  target=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  [ -n "$target" ] || { echo "package.sh: rustc not found; pass --target" >&2; exit 1; }
fi

if [ -z "$bin_dir" ]; then
  target_args=()
  [ "$(rustc -vV | sed -n 's/^host: //p')" = "$target" ] || target_args=(--target "$target")
  echo "== Building release binaries for $target (slow: link-time optimisation)"
  nice -n 10 cargo build -j"${CARGO_BUILD_JOBS:-2}" --release --locked "${target_args[@]}" \
    -p webhook-relay --bin webhook-relay \
    -p webhook-connector --bin webhook-connector --features webhook-connector/full
  bin_dir="${CARGO_TARGET_DIR:-target}/${target_args[1]:-}/release"
  bin_dir=${bin_dir//\/\//\/}
fi
for program in webhook-relay webhook-connector; do
  [ -x "$bin_dir/$program" ] || { echo "package.sh: $bin_dir/$program is missing" >&2; exit 1; }
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Documentation both programs ship: how to configure, run, migrate and what the contracts are.
common_docs=(docs/configuration.md docs/configuration-reference.md docs/operations.md
             docs/migration.md docs/protocol.md docs/reference)

# package NAME FILES…: copies each "source:destination-directory" pair into NAME's tree and packs it.
package() {
  local name=$1; shift
  local dir="$stage/$name-$version-$target"
  mkdir -p "$dir/bin" "$dir/docs"
  install -m 0755 "$bin_dir/$name" "$dir/bin/$name"
  cp README.md "$dir/README.md"
  for doc in "${common_docs[@]}"; do cp -R "$doc" "$dir/docs/"; done
  local pair source dest
  for pair in "$@"; do
    source=${pair%%:*}; dest=${pair##*:}
    mkdir -p "$dir/$dest"
    cp -R "$source" "$dir/$dest/"
  done
  "$dir/bin/$name" --version >/dev/null
  tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$out/$name-$version-$target.tar.gz" \
    "$name-$version-$target"
  echo "$out/$name-$version-$target.tar.gz"
}

package webhook-relay \
  docs/examples/relay.toml:examples docs/examples/webhooks.json:examples \
  docs/examples/connections.json:examples \
  packaging/systemd/webhook-relay.service:systemd \
  packaging/kubernetes/relay.yaml:kubernetes packaging/kubernetes/README.md:kubernetes \
  docs/benchmarks.md:docs
package webhook-connector \
  connector/examples/connector.json:examples connector/examples/connector-channels.toml:examples \
  packaging/systemd/webhook-connector.service:systemd \
  packaging/kubernetes/connector.yaml:kubernetes packaging/kubernetes/README.md:kubernetes \
  docs/modules.md:docs

(cd "$out" && sha256sum "webhook-relay-$version-$target.tar.gz" \
  "webhook-connector-$version-$target.tar.gz" > "SHA256SUMS-$version-$target")
echo "$out/SHA256SUMS-$version-$target"
