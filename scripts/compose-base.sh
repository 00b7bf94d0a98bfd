#!/usr/bin/env bash
# Builds, offline from any image registry, a base image equivalent to the official node:24-slim for the
# Dockerfile's BASE_IMAGE: a Debian bookworm root file system from Debian's own packages
# (`debootstrap --variant=minbase`), the project's Node.js 24 (the `node` npm package's binary) at
# /usr/local/bin/node, this machine's npm at /usr/local/lib/node_modules/npm, the `node` user (uid 1000)
# that the Dockerfile runs as and this machine's CA bundle, imported with `podman import`. Used by `npm run test:compose` (docs/deploy.md).
#
#   scripts/compose-base.sh [IMAGE]        default IMAGE: outrigger-base:bookworm-node24
#
# Nothing is done when IMAGE exists with the project's Node.js version. The root file system is cached as a tarball in
# $OUTRIGGER_BASE_CACHE (default /var/cache/outrigger) so a machine whose podman storage was wiped re-imports
# it instead of running debootstrap again. The mirror is the machine's first Debian one in /etc/apt/sources.list*
# (override: $DEBIAN_MIRROR).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-outrigger-base:bookworm-node24}
CACHE=${OUTRIGGER_BASE_CACHE:-/var/cache/outrigger}
NODE_BIN=node_modules/node/bin/node

[ -x "$NODE_BIN" ] || { echo "ERROR: $NODE_BIN is missing: run npm ci first (the node devDependency brings Node.js 24)" >&2; exit 1; }
NODE_VERSION=$("$NODE_BIN" --version)
case "$NODE_VERSION" in v24.*) ;; *) echo "ERROR: $NODE_BIN is $NODE_VERSION, expected v24.x" >&2; exit 1 ;; esac

if podman image exists "$IMAGE"; then
  HAS=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed -n 's/^NODE_VERSION=//p')
  if [ "v$HAS" = "$NODE_VERSION" ]; then
    echo "base image $IMAGE: present (node $NODE_VERSION)"
    exit 0
  fi
  echo "base image $IMAGE: has node v$HAS, the project's is $NODE_VERSION: making it again"
  podman rmi "$IMAGE" > /dev/null
fi
NPM_CLI=$(readlink -f "$(command -v npm)")
NPM_DIR=$(dirname "$(dirname "$NPM_CLI")")
[ -f "$NPM_DIR/package.json" ] || { echo "ERROR: cannot find npm's package next to $NPM_CLI" >&2; exit 1; }
NPM_VERSION=$("$NODE_BIN" -p 'require(process.argv[1]).version' "$NPM_DIR/package.json")

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # deb822 (URIs: ...) or one-line (deb URL suite ...) sources; the first that is not a security mirror.
  # (grep -s exits 2 for a file that does not exist, e.g. no sources.list on a deb822-only machine.)
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true
  } | awk '$1 == "URIs:" {print $2; next} {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}' | { grep -v security || true; } | sed -n 1p
}

TARBALL="$CACHE/rootfs-bookworm-minbase.tar"
WORK=$(mktemp -d /tmp/outrigger-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

if [ -s "$TARBALL" ]; then
  echo "base image $IMAGE: reusing the debootstrap root file system $TARBALL"
  mkdir -p "$ROOTFS"
  tar -C "$ROOTFS" -xf "$TARBALL"
else
  MIRROR=$(mirror)
  [ -n "$MIRROR" ] || { echo "ERROR: no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2; exit 1; }
  echo "base image $IMAGE: debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log" >&2
    echo "ERROR: debootstrap failed (log above)" >&2
    exit 1
  }
  # What an image does not need: downloaded packages, package lists, documentation.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
  if mkdir -p "$CACHE" 2>/dev/null; then
    tar -C "$ROOTFS" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL" || rm -f "$TARBALL.tmp"
  fi
fi

# Node.js and npm where the official image has them, and its `node` user and group (uid/gid 1000).
install -m 0755 "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
mkdir -p "$ROOTFS/usr/local/lib/node_modules"
cp -a "$NPM_DIR" "$ROOTFS/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
grep -q '^node:' "$ROOTFS/etc/group" || echo 'node:x:1000:' >> "$ROOTFS/etc/group"
grep -q '^node:' "$ROOTFS/etc/passwd" || echo 'node:x:1000:1000::/home/node:/bin/bash' >> "$ROOTFS/etc/passwd"
grep -q '^node:' "$ROOTFS/etc/shadow" || echo 'node:*:19000:0:99999:7:::' >> "$ROOTFS/etc/shadow"
mkdir -p "$ROOTFS/home/node"
chown 1000:1000 "$ROOTFS/home/node"
# This machine's CA bundle, which Node.js then trusts besides its own roots (NODE_EXTRA_CA_CERTS): where the
# registry is reached through a TLS-inspecting proxy, `npm ci` in the image build needs the proxy's CA.
CA_ENV=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$ROOTFS/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  CA_ENV=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi

tar -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${NODE_VERSION#v}" \
  --change 'CMD ["node"]' "${CA_ENV[@]}" \
  --message "debootstrap bookworm minbase + node $NODE_VERSION + npm $NPM_VERSION" \
  --quiet - "$IMAGE" > /dev/null
echo "base image $IMAGE: imported (node $NODE_VERSION, npm $NPM_VERSION)"
