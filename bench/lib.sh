# bench/lib.sh: what the benchmark scripts (bench/fanout, bench/ingest) share: finding the
# media file, installing nginx-rtmp, building, output directory, descriptor limit, core
# pinning, process bookkeeping (every started PID is killed on exit, by PID), CPU and RSS
# sampling from /proc, the nginx-rtmp configuration, and raising the run's CPU share.
#
# Sourced, not run. The sourcing script sets `prog` (its name, for messages) first.

die() { echo "$prog: $*" >&2; exit 2; }
log() { echo "$prog: $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# bench_find_media OVERRIDE: sets `file` to OVERRIDE when given, else to h264_aac_30s.flv from
# RILL_MEDIA_DIR or the shared media beside the repository (or beside the main checkout of a
# worktree: next to git's common dir).
bench_find_media() {
    file=${1:-}
    local common dir
    common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    if [ -z "$file" ]; then
        for dir in "${RILL_MEDIA_DIR:-}" "$repo/../shared/media" "${common:+$(dirname "$common")/../shared/media}"; do
            if [ -n "$dir" ] && [ -f "$dir/h264_aac_30s.flv" ]; then
                file=$(cd "$dir" && pwd)/h264_aac_30s.flv
                break
            fi
        done
    fi
    [ -n "$file" ] && [ -f "$file" ] || die "h264_aac_30s.flv not found (set RILL_MEDIA_DIR or pass a file)"
}

# bench_install INSTALL PKG...: apt-get installs the packages (when INSTALL is 1; else fails).
bench_install() {
    local install=$1
    shift
    [ $# -gt 0 ] || return 0
    [ "$install" = 1 ] || die "missing: $* (run without --no-install, as root)"
    local sudo policy_made=0 apt_ok=0 attempt
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    # Keep the package's init script from starting a system nginx on port 80.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
        policy_made=1
    fi
    log "installing $*"
    for attempt in 1 2; do
        if DEBIAN_FRONTEND=noninteractive timeout 300 "${sudo[@]}" apt-get install -y -q \
            --no-install-recommends "$@" >&2; then
            apt_ok=1
            break
        fi
        [ $attempt = 1 ] && timeout 300 "${sudo[@]}" apt-get update -q >&2 || true
    done
    [ $policy_made = 1 ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    [ $apt_ok = 1 ] || die "apt-get install $* failed"
}

# bench_nginx_pkgs: the packages nginx-rtmp needs that are missing, one a line.
bench_nginx_pkgs() {
    command -v nginx >/dev/null || echo nginx-light
    [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || echo libnginx-mod-rtmp
}

# bench_build BUILD: builds rill and rill-bench in release mode (when BUILD is 1) and sets
# `rill_bin` and `bench_bin`.
bench_build() {
    if [ "$1" = 1 ]; then
        log "cargo build --release -p rill -p rill-bench"
        (cd "$repo" && timeout 1800 cargo build --release -q -p rill -p rill-bench) || die "build failed"
    fi
    rill_bin=$repo/target/release/rill
    bench_bin=$repo/target/release/rill-bench
    [ -x "$rill_bin" ] && [ -x "$bench_bin" ] || die "missing $rill_bin or $bench_bin"
}

# bench_out_dir DIR: creates the output directory (a new temp dir when DIR is empty), sets `out`
# to its absolute path and empties `results` (out/results.tsv).
bench_out_dir() {
    out=$1
    if [ -z "$out" ]; then out=$(mktemp -d "/tmp/$prog.XXXXXX"); fi
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    results=$out/results.tsv
    : >"$results"
}

# bench_nofile CONNECTIONS: raises the descriptor limit (nginx needs its own in its config too)
# and sets `nofile`; fails when CONNECTIONS would not fit.
bench_nofile() {
    ulimit -Hn 65536 2>/dev/null || true
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    nofile=$(ulimit -n)
    [ "$nofile" = unlimited ] || [ "$nofile" -gt $(($1 + 100)) ] || die "ulimit -n $nofile is too low for $1 connections"
    [ "$nofile" = unlimited ] && nofile=65536
    return 0
}

# Cores: the server gets core 0, the load client (players and publishers) the last core.
ncpu=$(nproc)
clk_tck=$(getconf CLK_TCK)
if [ "$ncpu" -ge 2 ]; then
    server_core=0
    client_core=$((ncpu - 1))
    client_pin=(taskset -c "$client_core")
else
    server_core=""
    client_core=""
    client_pin=()
fi

# bench_raise_priority: other work on the machine (builds, tests) would skew every figure. The
# kernel schedules by session ("autogroup"), so raise this session's share when allowed (root);
# say so either way, and warn when nothing can be pinned.
bench_raise_priority() {
    [ -n "$server_core" ] || log "only one core: nothing is pinned, figures are not comparable to the issue's"
    if [ -w /proc/self/autogroup ] && echo -19 >/proc/self/autogroup 2>/dev/null; then
        log "scheduling: this session's autogroup at nice -19 (other sessions' load mostly kept off)"
    else
        log "scheduling: normal priority (run as root to raise this session's share of the CPU)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started is recorded and killed on exit, by PID.

started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: SIGTERM (nginx: SIGQUIT would wait for players; TERM is a fast stop), then KILL.
# A started process that is running (an exited, unreaped child is a zombie: not alive).
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# The PID leaves the list once reaped, so cleanup never signals a recycled PID.
stop() {
    local pid=$1 i keep=() p
    if kill -TERM "$pid" 2>/dev/null; then
        for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${started[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    started=("${keep[@]}")
}

# Seconds from now until the epoch time $1, at most $2 (0 when past), for sleep.
until_time() {
    awk -v e="$1" -v n="$(date +%s.%N)" -v m="$2" 'BEGIN {l = e - n; if (l <= 0) print 0; else if (l > m) print m; else printf "%.3f", l}'
}

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then echo "$p"; return; fi
    done
    die "no free port"
}

wait_listen() { # port timeout_s pid
    local i
    for i in $(seq $(($2 * 10))); do
        alive "$3" || return 1
        [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    return 1
}

# PIDs of a server: the process and, for nginx, its children (workers).
server_pids() { echo "$1"; pgrep -P "$1" 2>/dev/null || true; }

# Sum of utime+stime ticks over the given PIDs (threads are included in a process's stat).
cpu_ticks() {
    local pid sum=0 rest
    for pid in "$@"; do
        rest=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        # After "comm) ", field 3 (state) comes first: utime (14) and stime (15) are $12 and $13.
        sum=$((sum + $(awk '{print $12 + $13}' <<<"$rest")))
    done
    echo "$sum"
}

# Sum of VmRSS in KiB over the given PIDs.
rss_kib() {
    local pid sum=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

nginx_conf() { # dir port workers [tls_port] [hls_http_port hls_dir]
    local dir=$1 port=$2 workers=$3 tport=${4:-} hport=${5:-} hdir=${6:-}
    local push=off user="" stream="" stream_mod="" hls="" http=""
    if [ -n "$hport" ]; then
        # nginx-rtmp writes HLS into a tmpfs; nginx's static handler serves it with sendfile.
        hls="hls on;
            hls_path $hdir/hls;
            hls_fragment 2s;
            hls_playlist_length 6s;"
        http="http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }
    server {
        listen 127.0.0.1:$hport;
        location /hls/ {
            root $hdir;
            add_header Cache-Control no-cache;
        }
    }
}"
    fi
    [ "$workers" = 1 ] || push=on
    if [ -n "$tport" ]; then
        # TLS terminated by the stream module, proxied to nginx-rtmp on loopback.
        stream_mod="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
        stream="stream {
    server {
        listen 127.0.0.1:$tport ssl;
        ssl_certificate $out/cert/cert.pem;
        ssl_certificate_key $out/cert/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass 127.0.0.1:$port;
    }
}"
    fi
    # Workers must reach the auto-push sockets under our private (mode 700) temp dir.
    [ "$(id -u)" = 0 ] && user="user root;"
    mkdir -p "$dir/logs" "$dir/sock"
    cat >"$dir/nginx.conf" <<EOF
# Written by bench/$prog.
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
$stream_mod
daemon off;
master_process on;
$user
worker_processes $workers;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
rtmp_auto_push $push;
rtmp_socket_dir $dir/sock;
events {
    worker_connections $nofile;
    multi_accept on;
}
rtmp {
    server {
        listen 127.0.0.1:$port;
        application live {
            live on;
            $hls
        }
    }
}
$stream
$http
EOF
}
