#!/bin/bash
# A five-minute tour of bimfs on a throw-away disk:
#
#   ./tools/demo.sh          install deps, build, make a demo disk with real images
#                            (an ext4 filesystem image, raw and qcow2), start bimfs on it,
#                            ingest the images with bimctl, and show the mounted tree.
#                            bimfs keeps running afterwards so you can look around.
#   ./tools/demo.sh stop     stop that bimfs (unmount, remove the socket) and delete the demo dir.
#
# Everything lives in $BIMFS_DEMO_DIR (default /tmp/bimfs-demo): disk/, mnt/, the images in
# src/, bimfs.log and bimfs.sock. Build dir: $BUILD (default ./build).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-$root/build}
demo=${BIMFS_DEMO_DIR:-/tmp/bimfs-demo}
bimfs=$build/daemon/bimfs
bimctl=$build/ctl/bimctl
export BIMFS_SOCKET=$demo/bimfs.sock

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() {
    local words
    words=$(printf '%q ' "$@")
    printf '\033[2m$ %s\033[0m\n' "${words% }"
    "$@"
}

is_mounted() { grep -qs " $(realpath -m "$1") fuse" /proc/self/mounts; }

stop_demo() {
    if [ -f "$demo/bimfs.pid" ]; then
        local pid
        pid=$(cat "$demo/bimfs.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 200); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$demo/bimfs.pid"
    fi
    if is_mounted "$demo/mnt"; then
        fusermount3 -u -z "$demo/mnt"
    fi
}

if [ "${1:-}" = stop ]; then
    stop_demo
    rm -rf "$demo"
    echo "demo stopped; $demo removed"
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: $0 [stop]" >&2
    exit 2
fi

fail() {
    echo "demo.sh: failed; bimfs log ($demo/bimfs.log):" >&2
    tail -20 "$demo/bimfs.log" >&2 2>/dev/null || true
    stop_demo
}
trap fail ERR

say "Installing dependencies (tools/deps.sh) and building ($build)"
./tools/deps.sh
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" >/dev/null
fi
ninja -C "$build" >/dev/null
echo "built $bimfs and $bimctl"

say "Making a demo disk in $demo"
stop_demo
rm -rf "$demo"
mkdir -p "$demo/disk" "$demo/mnt" "$demo/src/files/etc"
# A Longhorn disk carries its identity in longhorn-disk.cfg; bimfs shows it as user.bim.disk_uuid.
printf '{"diskName":"demo-disk","diskUUID":"%s"}' "$(cat /proc/sys/kernel/random/uuid)" \
    >"$demo/disk/longhorn-disk.cfg"
# A small ext4 filesystem with a few files: a guest disk like a cloud image, only smaller.
echo "Hello from inside a bimfs backing image." >"$demo/src/files/README"
cp /etc/os-release "$demo/src/files/etc/os-release"
head -c 4M /dev/urandom >"$demo/src/files/random.bin"
mkfs.ext4 -q -F -L bimfs-demo -d "$demo/src/files" "$demo/src/disk.raw" 64M >/dev/null 2>&1
qemu-img convert -f raw -O qcow2 "$demo/src/disk.raw" "$demo/src/disk.qcow2"
ls -l "$demo/src/disk.raw" "$demo/src/disk.qcow2"

say "Starting bimfs on $demo/disk, mounted at $demo/mnt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bimfs" -f "$demo/disk" "$demo/mnt" --socket "$BIMFS_SOCKET" --listen "127.0.0.1:$port" \
    </dev/null >"$demo/bimfs.log" 2>&1 &
echo $! >"$demo/bimfs.pid"
for _ in $(seq 100); do
    if "$bimctl" version >/dev/null 2>&1 && is_mounted "$demo/mnt"; then break; fi
    kill -0 "$(cat "$demo/bimfs.pid")" 2>/dev/null || { echo "bimfs exited" >&2; false; }
    sleep 0.1
done
show "$bimctl" version

say "Ingesting the images (upload from a file; the checksum is verified while writing)"
show "$bimctl" create demo-qcow2 --file "$demo/src/disk.qcow2" \
    --checksum "sha256:$(sha256sum "$demo/src/disk.qcow2" | cut -d' ' -f1)" --wait
show "$bimctl" create demo-raw --file "$demo/src/disk.raw" --wait
show "$bimctl" create demo-clone --clone demo-qcow2 --wait

say "The mounted tree: one directory per image, backing (as stored) and raw (the guest disk)"
show ls -l "$demo/mnt"
show ls -l "$demo/mnt/demo-qcow2"

say "Status as extended attributes"
show getfattr -d "$demo/mnt/demo-qcow2"
show getfattr -d "$demo/mnt"

say "The image list (the same fields as Longhorn's backing-image-manager)"
show "$bimctl" list

say "Inside the guest disk: the ext4 filesystem, read through the mount"
if [ -e "$demo/mnt/demo-qcow2/raw" ]; then
    show debugfs -R 'ls -l /' "$demo/mnt/demo-qcow2/raw"
else
    show debugfs -R 'ls -l /' "$demo/mnt/demo-raw/raw"
fi
show debugfs -R 'cat /README' "$demo/mnt/demo-raw/raw"

say "On disk, in Longhorn's layout"
show find "$demo/disk" -type f

trap - ERR
http_hint=
if curl -fs -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    http_hint="    curl -s http://127.0.0.1:$port/v1/images"
fi
cat <<MSG

bimfs is still running (pid $(cat "$demo/bimfs.pid"), log $demo/bimfs.log). Try:

    export BIMFS_SOCKET=$BIMFS_SOCKET
    $bimctl watch &
    $bimctl delete demo-clone
    $bimctl get demo-raw
$http_hint

Stop it (unmount, remove the socket and $demo) with:

    ./tools/demo.sh stop
MSG
