# shellcheck shell=bash
# bench/lib.sh - helpers shared by bench/read and bench/ingest (sourced, not run).
#
# Environment (all optional):
#   BUILD        meson build dir holding daemon/bimfs and ctl/bimctl   (default ./build)
#   BENCH_DIR    work dir, on a real disk (default: mktemp -d under /var/tmp, removed at exit;
#                if given, a run.XXXXXX dir is made inside it and only that is removed)
#   BENCH_SIZE   test file size: bytes or with a K/M/G suffix (binary)  (default 2G)
#   BENCH_RUNS   timed runs per measurement; the median is reported     (default 3)
#   BENCH_WARMUP rounds run first and left out of the median, in scripts that loop over
#                ROUNDS and use run_label (read, ingest)                 (default 1)
#   BENCH_PERF   a directory: record `perf record -g` of the daemon during each measured phase
#   BENCH_KEEP   1: keep the work dir and the daemon log at exit
#   BENCH_PREFAULT 0: skip the memory warm-up before each timed run (see prefault_memory)
#
# Every helper returns non-zero (or exits through bench_die) on failure; cleanup runs from
# the EXIT trap that bench_init installs: daemons are stopped, mounts lazily unmounted.

set -euo pipefail
export LC_ALL=C

BENCH_MISSES=0
BENCH_PIDS=()    # processes to stop at exit (daemons, samplers)
BENCH_MOUNTS=()  # mountpoints to unmount at exit
BENCH_ROWS=()    # result lines for the summary
BENCH_OWN_DIR="" # the directory bench_cleanup removes
BENCH_PREFAULT_FILE=/dev/shm/bimfs-bench-prefault.$$

bench_log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
bench_die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 2
}

# bytes_parse "256M" -> 268435456
bytes_parse() {
    local v=$1 n mult=1
    case $v in
    *[kK]) mult=1024 n=${v%?} ;;
    *[mM]) mult=$((1024 * 1024)) n=${v%?} ;;
    *[gG]) mult=$((1024 * 1024 * 1024)) n=${v%?} ;;
    *) n=$v ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] || bench_die "not a size: '$v' (use bytes or a K/M/G suffix)"
    echo $((n * mult))
}

bench_cleanup() {
    local rc=$? pid m
    set +e
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BENCH_PIDS[@]}"; do
        bench_wait_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
    done
    rm -f -- "$BENCH_PREFAULT_FILE"
    for m in "${BENCH_MOUNTS[@]}"; do
        if findmnt -M "$m" >/dev/null 2>&1; then
            fusermount3 -u -z "$m" 2>/dev/null
        fi
    done
    if [[ -n $BENCH_OWN_DIR ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            bench_log "keeping $BENCH_OWN_DIR"
        else
            rm -rf -- "$BENCH_OWN_DIR"
        fi
    fi
    exit "$rc"
}

# bench_wait_exit PID SECONDS: wait for a process (ours or not) to disappear.
bench_wait_exit() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || {
            wait "$pid" 2>/dev/null
            return 0
        }
        sleep 0.1
    done
    return 1
}

# bench_init: check the environment, set BIMFS, BIMCTL, WORK, SIZE, RUNS, install the trap.
bench_init() {
    [[ $(id -u) == 0 ]] || bench_die "must run as root (drop_caches, FUSE mounts)"
    [[ -w /proc/sys/vm/drop_caches ]] || bench_die "/proc/sys/vm/drop_caches is not writable"
    local b=${BUILD:-./build}
    BIMFS=$(realpath -e "$b/daemon/bimfs" 2>/dev/null) || bench_die "no $b/daemon/bimfs (set BUILD)"
    BIMCTL=$(realpath -e "$b/ctl/bimctl" 2>/dev/null) || bench_die "no $b/ctl/bimctl (set BUILD)"
    SIZE=$(bytes_parse "${BENCH_SIZE:-2G}")
    ((SIZE > 0 && SIZE % 512 == 0)) || bench_die "BENCH_SIZE must be a positive multiple of 512"
    RUNS=${BENCH_RUNS:-3}
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_RUNS must be a positive integer"
    WARMUP=${BENCH_WARMUP:-1}
    [[ $WARMUP =~ ^[0-9]+$ ]] || bench_die "BENCH_WARMUP must be a number"
    # shellcheck disable=SC2034 # ROUNDS is for the scripts
    ROUNDS=$((WARMUP + RUNS))

    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    if [[ -n ${BENCH_DIR:-} ]]; then
        mkdir -p -- "$BENCH_DIR"
        WORK=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
    else
        WORK=$(mktemp -d /var/tmp/bimfs-bench.XXXXXX)
    fi
    BENCH_OWN_DIR=$WORK
    local fstype
    fstype=$(findmnt -n -o FSTYPE -T "$WORK")
    [[ $fstype != tmpfs ]] || bench_die "$WORK is on tmpfs; set BENCH_DIR to a real disk"
    local avail need=$((SIZE * 3 + 256 * 1024 * 1024))
    avail=$(($(df --output=avail -B1 "$WORK" | tail -1)))
    ((avail > need)) || bench_die "$WORK: $avail bytes free, need $need"
    if [[ -n ${BENCH_PERF:-} ]]; then
        mkdir -p -- "$BENCH_PERF"
        BENCH_PERF=$(realpath -e "$BENCH_PERF")
    fi
    BENCH_LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
    bench_log "work dir $WORK ($fstype), size $SIZE bytes, $RUNS runs, $(nproc) cpus, $(uname -r)"
    bench_log "load average $BENCH_LOAD0"
    awk -v l="${BENCH_LOAD0%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }' &&
        bench_log "warning: the machine is busy; results will be noisy"
    return 0
}

# bench_track_pid PID / bench_track_mount DIR: stop/unmount at exit.
bench_track_pid() { BENCH_PIDS+=("$1"); }
bench_track_mount() { BENCH_MOUNTS+=("$1"); }

# random_file PATH BYTES: incompressible data.
random_file() {
    head -c "$2" /dev/urandom >"$1"
    [[ $(stat -c %s "$1") == "$2" ]] || bench_die "$1: short write"
}

# drop_caches: flush dirty data, then drop the page cache of every file (FUSE files too).
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# cache_file PATH...: read files once so they sit in the page cache.
cache_file() { cat -- "$@" >/dev/null; }

# prefault_memory: touch and free 2 x SIZE of memory right before a timed run. On a VM whose
# balloon reports free pages to the host (virtio_balloon page_reporting), the first write to
# memory the guest freed earlier faults in the host: a run that fills 2 GiB of new page cache
# then spends seconds in memcpy (measured: copy_file_range at 0.3 GB/s instead of 9 GB/s). The
# warm-up is the same for every side of a comparison; BENCH_PREFAULT=0 turns it off.
prefault_memory() {
    [[ ${BENCH_PREFAULT:-1} == 1 ]] || return 0
    [[ $(findmnt -n -o FSTYPE /dev/shm 2>/dev/null) == tmpfs ]] || return 0
    local mib=$((SIZE * 2 / 1048576 + 256)) avail
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1024 / 2) }' /proc/meminfo)
    ((mib < avail)) || mib=$avail
    dd if=/dev/zero of="$BENCH_PREFAULT_FILE" bs=1M count="$mib" status=none
    rm -f -- "$BENCH_PREFAULT_FILE"
}

# free_port: a TCP port on 127.0.0.1 nobody listens on.
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        if ! ss -Hltn "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    bench_die "no free TCP port found"
}

# daemon_start DISK MNT [TAG [BIMFS ARGS...]]: start bimfs in the foreground (backgrounded
# here); sets DAEMON_PID, SOCK ($WORK/TAG.sock), DAEMON_LOG ($WORK/TAG.log) and DAEMON_PORT (its
# --listen port on 127.0.0.1), and returns once the mount and the control socket answer. TAG
# (default bimfs) tells several daemons of one run apart.
daemon_start() {
    local disk=$1 mnt=$2 tag=${3:-bimfs} i
    shift $(($# < 3 ? $# : 3))
    mkdir -p -- "$disk" "$mnt"
    SOCK=$WORK/$tag.sock
    DAEMON_LOG=$WORK/$tag.log
    DAEMON_PORT=$(free_port)
    bench_track_mount "$mnt"
    "$BIMFS" -f --socket "$SOCK" --listen "127.0.0.1:$DAEMON_PORT" "$@" "$disk" "$mnt" \
        </dev/null >>"$DAEMON_LOG" 2>&1 &
    DAEMON_PID=$!
    bench_track_pid "$DAEMON_PID"
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            cat "$DAEMON_LOG" >&2
            bench_die "bimfs exited during start-up (log above)"
        fi
        if findmnt -M "$mnt" >/dev/null && bimctl version >/dev/null 2>&1; then
            bench_log "bimfs pid $DAEMON_PID mounted at $mnt ($(bimctl version | head -1))"
            return 0
        fi
        sleep 0.1
    done
    bench_die "bimfs did not mount $mnt and answer on $SOCK within 30 s"
}

# daemon_stop: SIGTERM, as a user would; the daemon unmounts by itself.
daemon_stop() {
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    bench_wait_exit "$DAEMON_PID" 30 || bench_die "bimfs pid $DAEMON_PID ignored SIGTERM for 30 s"
}

bimctl() { "$BIMCTL" -s "$SOCK" "$@"; }

# nginx_start: our own nginx (Debian's) on 127.0.0.1:$PORT serving $WWW with sendfile, its files
# under $NGX; sets PORT, URL (of $WWW/image.raw) and NGINX_PID. The access log
# ($NGX/access.log) has one line per response: $msec $status $body_bytes_sent "$http_range"
# "$http_if_range" $uri.
nginx_start() {
    local i
    command -v nginx >/dev/null || bench_die "nginx is not installed"
    PORT=$(free_port)
    mkdir -p -- "$NGX/tmp"
    cat >"$NGX/nginx.conf" <<NGINX_CONF
daemon off;
user root;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log;
events { worker_connections 64; }
http {
    log_format bench '\$msec \$status \$body_bytes_sent "\$http_range" "\$http_if_range" \$uri';
    access_log $NGX/access.log bench;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$PORT;
        root $WWW;
    }
}
NGINX_CONF
    nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log" </dev/null >/dev/null 2>&1 &
    NGINX_PID=$!
    bench_track_pid "$NGINX_PID"
    URL=http://127.0.0.1:$PORT/image.raw
    for ((i = 0; i < 100; i++)); do
        curl -sfI "$URL" >/dev/null 2>&1 && {
            bench_log "nginx pid $NGINX_PID serving $URL"
            return 0
        }
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$NGX/error.log" >&2
    bench_die "nginx did not start (log above)"
}

# fsync_fresh: seconds of one fsync of a copy of $F written to $X just before (from the page
# cache): the "one fsync" of the last byte -> ready latency targets.
fsync_fresh() {
    dd if="$F" of="$X" bs=1M 2>/dev/null || bench_die "dd to $X failed"
    time_cmd sync -- "$X"
}

# image_dir DISK NAME UUID: the store directory of an image, which must hold `backing`.
image_dir() {
    local d=$1/backing-images/$2-$3
    [[ -f $d/backing ]] || bench_die "$d/backing does not exist"
    echo "$d"
}

# time_cmd CMD...: run CMD (its stdout and stderr to $WORK/last.out), print the wall-clock
# seconds it took. Fails if CMD fails.
time_cmd() {
    local t0 t1
    t0=$EPOCHREALTIME
    if ! "$@" >"$WORK/last.out" 2>&1; then
        cat "$WORK/last.out" >&2
        bench_die "command failed: $*"
    fi
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}

# dd_read FILE: the read every benchmark times; checks that all SIZE bytes came through.
dd_read() {
    local copied
    dd if="$1" of=/dev/null bs=1M 2>"$WORK/dd.err" || {
        cat "$WORK/dd.err" >&2
        return 1
    }
    copied=$(awk '/bytes/ { print $1; exit }' "$WORK/dd.err")
    [[ $copied == "$SIZE" ]] || {
        echo "dd $1: copied $copied bytes, expected $SIZE" >&2
        return 1
    }
}

# run_label R: how the log names round R (0-based) of ROUNDS.
run_label() { if (($1 < WARMUP)); then echo "warm-up"; else echo "run $(($1 - WARMUP + 1))"; fi; }

# median N...: the middle value (the upper middle for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }

# mbps SECONDS: SIZE bytes over SECONDS in MB/s (10^6 bytes).
mbps() { awk -v s="$1" -v n="$SIZE" 'BEGIN { printf "%.0f\n", n / s / 1e6 }'; }

# rss_start PID: sample VmRSS every 100 ms in the background. rss_stop ends the sampling and
# sets RSS_MAX_MIB (the largest sample) and RSS_SAMPLES.
rss_start() {
    RSS_FILE=$WORK/rss.$1
    : >"$RSS_FILE"
    (
        while kill -0 "$1" 2>/dev/null; do
            awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
            sleep 0.1
        done
    ) >>"$RSS_FILE" &
    RSS_PID=$!
    bench_track_pid "$RSS_PID"
}
rss_stop() {
    kill "$RSS_PID" 2>/dev/null || true
    wait "$RSS_PID" 2>/dev/null || true
    # shellcheck disable=SC2034 # RSS_MAX_MIB is for the caller
    read -r RSS_MAX_MIB RSS_SAMPLES < <(awk 'BEGIN { m = 0 } $1 > m { m = $1 }
        END { printf "%.1f %d\n", m / 1024, NR }' "$RSS_FILE")
    ((RSS_SAMPLES > 0)) || bench_die "no RSS sample of the daemon was taken"
}

# perf_start LABEL / perf_stop: with BENCH_PERF set, profile the daemon during a phase.
perf_start() {
    PERF_PID=""
    [[ -n ${BENCH_PERF:-} ]] || return 0
    perf record -q -g -p "$DAEMON_PID" -o "$BENCH_PERF/$1.data" >/dev/null 2>&1 &
    PERF_PID=$!
    bench_track_pid "$PERF_PID"
    sleep 0.5
}
perf_stop() {
    [[ -n ${PERF_PID:-} ]] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
}

# report NAME MEASURED BASELINE UNIT OP TARGET: record one ratio (MEASURED/BASELINE) against
# its target (OP is >= or <=) and print it with PASS or MISS.
report() {
    local name=$1 m=$2 b=$3 unit=$4 op=$5 target=$6 ratio verdict
    ratio=$(awk -v m="$m" -v b="$b" 'BEGIN { printf "%.2f\n", m / b }')
    verdict=$(awk -v r="$ratio" -v t="$target" -v op="$op" \
        'BEGIN { ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "PASS" : "MISS" }')
    [[ $verdict == PASS ]] || BENCH_MISSES=$((BENCH_MISSES + 1))
    BENCH_ROWS+=("$(printf '%-24s %10s %10s %-5s %6s  %s %-5s %s' \
        "$name" "$m" "$b" "$unit" "$ratio" "$op" "$target" "$verdict")")
    printf '%s\n' "${BENCH_ROWS[-1]}"
}

# report_limit NAME VALUE UNIT LIMIT: an absolute value that must stay below LIMIT.
report_limit() {
    local verdict=PASS
    awk -v v="$2" -v l="$4" 'BEGIN { exit !(v < l) }' || {
        verdict=MISS
        BENCH_MISSES=$((BENCH_MISSES + 1))
    }
    BENCH_ROWS+=("$(printf '%-24s %10s %10s %-5s %6s  < %s %-5s %s' \
        "$1" "$2" "-" "$3" "-" "$4" "$3" "$verdict")")
    printf '%s\n' "${BENCH_ROWS[-1]}"
}

# bench_summary TITLE: print every result again; exit status 1 if a target was missed.
bench_summary() {
    printf '\n== %s: %s, size %s bytes, median of %s, %s cpus, kernel %s ==\n' \
        "$1" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$SIZE" "$RUNS" "$(nproc)" "$(uname -r)"
    printf 'load average at start %s, at end %s\n' "$BENCH_LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-24s %10s %10s %-5s %6s  %s\n' benchmark measured baseline unit ratio target
    printf '%s\n' "${BENCH_ROWS[@]}"
    ((BENCH_MISSES == 0))
}
