#!/usr/bin/env bash
# Soak test (issue 21 item 10): `bash tools/soak.sh MINUTES` runs rill for MINUTES under a churn
# of publishers and players over every protocol, killed mid-stream (SIGKILL or SIGTERM, at
# random), next to one long-lived publisher and one long-lived player that must stay healthy.
# The rill process's RSS, open descriptors and threads are sampled every SAMPLE seconds; at the
# end the churn stops, the server idles past [hls] keep_after_end_ms, and a verdict is printed:
# each figure "flat" or "growing", the long-lived pair "healthy" or not. Exit status 0 when all
# is flat and healthy, 1 otherwise. Not part of tools/test-all.sh (it takes MINUTES and more).
#
# Environment: RILL_BIN (default target/release/rill, built if missing; rill-async works too),
# SAMPLE (seconds, default 10), SOAK_DIR (default a fresh temporary directory, kept: samples.csv,
# rill.log, rill.toml), SEED (the churn's random seed).
set -euo pipefail

MINUTES=${1:?usage: tools/soak.sh MINUTES}
SAMPLE=${SAMPLE:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MEDIA=${MEDIA:-/work/shared/media/h264_aac_30s.flv}
[[ -f $MEDIA ]] || MEDIA="$ROOT/tests/media/h264_aac_30s.flv"
[[ -f $MEDIA ]] || { echo "soak: no media file (set MEDIA=)" >&2; exit 2; }
for tool in ffmpeg curl python3 timeout; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is missing" >&2; exit 2; }
done
BIN=${RILL_BIN:-$ROOT/target/release/rill}
if [[ ! -x $BIN ]]; then
    (cd "$ROOT" && cargo build --release -p rill)
fi
DIR=${SOAK_DIR:-$(mktemp -d /tmp/rill-soak.XXXXXX)}
mkdir -p "$DIR"
RANDOM=${SEED:-$$}

# Free loopback ports for RTMP, HTTP, RTSP (and an RTSP UDP range above them).
read -r RTMP HTTP RTSP UDP < <(python3 - <<'EOF'
import socket
ports = []
socks = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s); ports.append(s.getsockname()[1])
print(*ports, 40000 + (ports[0] % 2000) * 10)
EOF
)
KEEP_MS=20000
cat >"$DIR/rill.toml" <<EOF
workers = 2
[rtmp]
addr = "127.0.0.1:$RTMP"
[http]
addr = "127.0.0.1:$HTTP"
[rtsp]
addr = "127.0.0.1:$RTSP"
udp_port_min = $UDP
udp_port_max = $((UDP + 400))
[hls]
keep_after_end_ms = $KEEP_MS
# The long-lived stream's record window (kept in memory by design) fills within a minute, so
# memory that still grows after that is a leak, not the window.
record_max_bytes = 8388608
EOF

"$BIN" --config "$DIR/rill.toml" 2>"$DIR/rill.log" &
RILL=$!
CLIENTS=()
cleanup() {
    for pid in "${CLIENTS[@]}" ${LONG_PUB:-} ${LONG_PLAY:-}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    kill -TERM "$RILL" 2>/dev/null || true
    wait "$RILL" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$HTTP/api/stat/lal_info" && break
    sleep 0.1
done
kill -0 "$RILL" 2>/dev/null || { echo "soak: rill did not start:" >&2; cat "$DIR/rill.log" >&2; exit 2; }

RTMP_URL="rtmp://127.0.0.1:$RTMP/live"
HTTP_URL="http://127.0.0.1:$HTTP/live"
RTSP_URL="rtsp://127.0.0.1:$RTSP/live"
FF=(ffmpeg -hide_banner -loglevel error -nostdin)

# The long-lived pair: a publisher looping the file, an HTTP-FLV player writing to a file.
"${FF[@]}" -re -stream_loop -1 -i "$MEDIA" -c copy -f flv "$RTMP_URL/long" 2>"$DIR/long-publisher.log" &
LONG_PUB=$!
sleep 2
curl -sN "$HTTP_URL/long.flv" -o "$DIR/long.flv" &
LONG_PLAY=$!

# A WebSocket player (WS-FLV or WS-TS) that reads until killed: python3 ws.py PORT PATH.
cat >"$DIR/ws.py" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(("GET /live/%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
           % sys.argv[2]).encode())
while s.recv(65536):
    pass
EOF

# One churn client: a random protocol, role and stream, killed after 2-14 s. `exec`: the
# background job is `timeout` itself, which passes a TERM on to its client.
churn_one() {
    local n=$1 life=$((2 + RANDOM % 13)) sig=KILL stream
    ((RANDOM % 2)) && sig=TERM
    # Players play the long-lived stream or a churn stream that may or may not be live.
    if ((RANDOM % 3 == 0)); then stream=long; else stream=c$((RANDOM % 6)); fi
    local k=$((RANDOM % 13))
    case $k in
    0 | 1) exec timeout -s $sig $life "${FF[@]}" -re -stream_loop -1 -i "$MEDIA" -c copy -f flv "$RTMP_URL/c$((n % 6))" ;;
    2) exec timeout -s $sig $life "${FF[@]}" -re -stream_loop -1 -i "$MEDIA" -c copy -f rtsp -rtsp_transport tcp "$RTSP_URL/c$((n % 6))" ;;
    3) exec timeout -s $sig $life "${FF[@]}" -re -stream_loop -1 -i "$MEDIA" -c copy -f rtsp -rtsp_transport udp "$RTSP_URL/c$((n % 6))" ;;
    4) exec timeout -s $sig $life "${FF[@]}" -i "$RTMP_URL/$stream" -c copy -f null - ;;
    5) exec timeout -s $sig $life curl -sN "$HTTP_URL/$stream.flv" -o /dev/null ;;
    6) exec timeout -s $sig $life curl -sN "$HTTP_URL/$stream.ts" -o /dev/null ;;
    7) exec timeout -s $sig $life curl -sN "$HTTP_URL/$stream.mp4" -o /dev/null ;;
    8) exec timeout -s $sig $life "${FF[@]}" -i "$HTTP_URL/$stream.m3u8" -c copy -f null - ;;
    9) exec timeout -s $sig $life "${FF[@]}" -i "$HTTP_URL/$stream/llhls.m3u8" -c copy -f null - ;;
    10) exec timeout -s $sig $life "${FF[@]}" -rtsp_transport tcp -i "$RTSP_URL/$stream" -c copy -f null - ;;
    11) exec timeout -s $sig $life "${FF[@]}" -rtsp_transport udp -i "$RTSP_URL/$stream" -c copy -f null - ;;
    12) exec timeout -s $sig $life python3 "$DIR/ws.py" "$HTTP" "$stream.$(((RANDOM % 3 == 0)) && echo ts || echo flv)" ;;
    esac
}

sample() {
    local rss fds threads size
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$RILL/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$RILL/status")
    fds=$(find "/proc/$RILL/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    size=$(stat -c %s "$DIR/long.flv" 2>/dev/null || echo 0)
    hls=$(curl -s -m 5 "http://127.0.0.1:$HTTP/metrics" |
        awk '/^rill_hls_memory_bytes/ {s += $2} END {print int(s / 1024)}')
    echo "$(($(date +%s) - START)),$1,$rss,$fds,$threads,$size,${#CLIENTS[@]},$hls" >>"$DIR/samples.csv"
}

echo "t_s,phase,rss_kib,fds,threads,long_player_bytes,churn_clients,hls_kib" >"$DIR/samples.csv"
START=$(date +%s)
END=$((START + MINUTES * 60))
sample start
NEXT_SAMPLE=$((START + SAMPLE))
n=0
spawned=0
echo "soak: rill pid $RILL, $MINUTES min of churn, samples in $DIR/samples.csv"
while (($(date +%s) < END)); do
    # Keep 8-16 churn clients running, one new every half second at most.
    alive=()
    for pid in "${CLIENTS[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    CLIENTS=("${alive[@]}")
    if ((${#CLIENTS[@]} < 8 + RANDOM % 9)); then
        churn_one $n >/dev/null 2>&1 &
        CLIENTS+=($!)
        disown $!
        n=$((n + 1))
        spawned=$((spawned + 1))
    fi
    if (($(date +%s) >= NEXT_SAMPLE)); then
        sample churn
        NEXT_SAMPLE=$((NEXT_SAMPLE + SAMPLE))
    fi
    sleep 0.5
done
echo "soak: churn over ($spawned clients); idling $((KEEP_MS / 1000 + 15)) s past the HLS keep time"
for pid in "${CLIENTS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
CLIENTS=()
IDLE_END=$(($(date +%s) + KEEP_MS / 1000 + 15))
while (($(date +%s) < IDLE_END)); do
    sleep "$SAMPLE"
    sample idle
done
LONG_OK=yes
kill -0 "$LONG_PUB" 2>/dev/null || LONG_OK="no (publisher died)"
kill -0 "$LONG_PLAY" 2>/dev/null || LONG_OK="no (player died)"
METRICS=$(curl -s "http://127.0.0.1:$HTTP/metrics" | grep -E '^rill_(hls_memory_bytes|hls_evictions_total|connections|streams)[ {]' || true)
PANICS=$(grep -c panicked "$DIR/rill.log" || true)
WARNS=$(grep -c ' WARN ' "$DIR/rill.log" || true)

STATUS=0
python3 - "$DIR/samples.csv" "$LONG_OK" "$spawned" "$PANICS" "$WARNS" "$SAMPLE" <<'EOF' || STATUS=$?
import csv, sys, statistics as st
path, long_ok, spawned, panics, warns, every = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
churn = [r for r in rows if r["phase"] == "churn"]
idle = [r for r in rows if r["phase"] == "idle"]
start = rows[0]
def col(rs, k): return [int(r[k]) for r in rs]
q = max(1, len(churn) // 4)
verdict_ok = True
print(f"churn clients started: {spawned}; samples: {len(rows)} every {every} s")
print(f"{'':8} {'start':>8} {'churn q2':>9} {'churn q4':>9} {'churn max':>9} {'idle end':>9}  verdict")
for k, unit, slack in [("rss_kib", "KiB", 0.10), ("hls_kib", "KiB", 0.10), ("fds", "", 0.10),
                       ("threads", "", 0.0)]:
    s0 = int(start[k]); c = col(churn, k); i = col(idle, k)
    q2 = st.mean(c[q:2 * q]) if len(c) >= 4 else st.mean(c)
    q4 = st.mean(c[-q:])
    end = i[-1] if i else c[-1]
    # Growing: the last quarter of the churn above the second by more than the slack (and,
    # for memory, by more than 8 MiB): under the same load, more is held as time goes on.
    grow = q4 > q2 * (1 + slack) + (8192 if k.endswith("kib") else 2)
    verdict_ok &= not grow
    print(f"{k:8} {s0:>8} {q2:>9.0f} {q4:>9.0f} {max(c):>9} {end:>9}  {'growing' if grow else 'flat'}")
if idle:
    print(f"after the churn: RSS {int(idle[-1]['rss_kib']) / 1024:.0f} MiB (start "
          f"{int(start['rss_kib']) / 1024:.0f} MiB), HLS {int(idle[-1]['hls_kib']) / 1024:.1f} MiB, "
          f"{idle[-1]['fds']} descriptors (start {start['fds']})")
sizes = col(rows, "long_player_bytes")
stalls = sum(1 for a, b in zip(sizes, sizes[1:]) if b <= a)
healthy = long_ok == "yes" and stalls == 0
verdict_ok &= healthy and panics == "0"
print(f"long-lived pair: running={long_ok}, player got {sizes[-1] / 1e6:.1f} MB, "
      f"samples without progress: {stalls} -> {'healthy' if healthy else 'NOT healthy'}")
print(f"server log: {panics} panics, {warns} warnings")
print("VERDICT:", "flat and healthy" if verdict_ok else "NOT flat or NOT healthy")
sys.exit(0 if verdict_ok else 1)
EOF

echo "$METRICS"
echo "soak: files in $DIR"
exit $STATUS
