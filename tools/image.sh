#!/bin/bash
# tools/image.sh - build the bimfs container image offline with buildah (docs/operations.md
# "Container image"): `buildah from scratch`, then the release binaries bimfs and bimctl, the
# helpers the DaemonSet's probes use (fusermount3, getfattr), exactly the shared libraries `ldd`
# names for them, the CA bundle, and an entrypoint. Nothing is pulled (--pull=never). The image
# is exported as an OCI archive, then checked: `bimfs --version` and `bimctl version` run in it
# (`buildah run --isolation chroot`). Prints the image's size.
#
# usage: sudo tools/image.sh [BUILD_DIR] [OUT.tar]     (defaults: build-image, bimfs-oci.tar)
# Needs buildah (Debian's package). Not run by tools/test.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-image}
out=${2:-$root/bimfs-oci.tar}
# the tag deploy/kubernetes/kustomization.yaml names: the project's version
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$root/meson.build" | head -1)
name=localhost/bimfs:${version:-dev}

command -v buildah >/dev/null || { echo "image.sh: needs buildah (apt-get install buildah)" >&2; exit 2; }
if [ ! -x "$build/daemon/bimfs" ]; then
    meson setup "$build" "$root" --buildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null

bins=("$build/daemon/bimfs" "$build/ctl/bimctl" "$(command -v fusermount3)" "$(command -v getfattr)")
ctr=$(buildah from --pull=never scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")

# every library ldd names (resolved through symlinks, installed under the name ldd gave),
# and the dynamic loader
mapfile -t libs < <(ldd "${bins[@]}" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | sort -u)
for lib in "${libs[@]}"; do
    install -D -m 0755 "$(readlink -f "$lib")" "$mnt$lib"
done
install -D -m 0755 "$build/daemon/bimfs" "$mnt/usr/local/bin/bimfs"
install -D -m 0755 "$build/ctl/bimctl" "$mnt/usr/local/bin/bimctl"
install -D -m 4755 "$(command -v fusermount3)" "$mnt/usr/bin/fusermount3"
install -D -m 0755 "$(command -v getfattr)" "$mnt/usr/bin/getfattr"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$mnt/tmp" "$mnt/run" "$mnt/dev" "$mnt/proc" "$mnt/var/lib/longhorn"
chmod 1777 "$mnt/tmp"
buildah umount "$ctr" >/dev/null

buildah config --entrypoint '["/usr/local/bin/bimfs"]' --cmd '--help' \
    --label org.opencontainers.image.title=bimfs \
    --label org.opencontainers.image.source=https://example.invalid/bimfs "$ctr"

# the image runs its own binaries
v1=$(buildah run --isolation chroot "$ctr" -- /usr/local/bin/bimfs --version)
v2=$(buildah run --isolation chroot "$ctr" -- /usr/local/bin/bimctl version 2>&1 || true)
echo "in the image: bimfs --version: $v1"
echo "in the image: bimctl version: $v2"
case $v2 in
*"bimctl"*) ;;
*) echo "image.sh: bimctl version did not run in the image" >&2; exit 1 ;;
esac

buildah commit --quiet "$ctr" "$name" >/dev/null
rm -f "$out"
buildah push --quiet "$name" "oci-archive:$out:$name"
size=$(du -b "$out" | cut -f1)
echo "image $name: ${#libs[@]} libraries; OCI archive $out, $((size / 1024 / 1024)) MiB ($size bytes)"
