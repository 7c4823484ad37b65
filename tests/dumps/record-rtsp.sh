#!/usr/bin/env bash
# Records the RTSP dumps in this directory: a running rill with recording proxies (rill-replay
# record) in front of it, an ffmpeg RTSP push over TCP (interleaved) of 3 s of the test file to
# live/r, then about a second later an RTSP player over TCP (ffmpeg, 2 s) and an HTTP-FLV player
# (ffprobe, about 0.75 s) of the same stream.
# Usage: tests/dumps/record-rtsp.sh [MEDIA]   (from the repository root; builds rill and rill-replay)
# The RTMP dumps come from record.sh. tests/e2e/dump_replay.rs replays both sets and asserts
# figures measured from these very files: re-recording means updating them.
set -euo pipefail
MEDIA=${1:-/work/shared/media/h264_aac_10s.flv}
DIR=$(cd "$(dirname "$0")" && pwd)
RTSP=127.0.0.1:42554 HTTP=127.0.0.1:42180 RTMP=127.0.0.1:42835
PUB=127.0.0.1:42555 PLAY=127.0.0.1:42556 HPLAY=127.0.0.1:42181
cargo build -q -p rill -p rill-replay
BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/rill" --rtmp-addr $RTMP --http-addr $HTTP --rtsp-addr $RTSP --workers 1 2>/tmp/rill-record-rtsp.log & pids+=($!)
"$BIN/rill-replay" record --listen $PUB --to $RTSP --kind rtsp --out "$DIR/rtsp_publish.rilldump" & pids+=($!)
"$BIN/rill-replay" record --listen $PLAY --to $RTSP --kind rtsp --out "$DIR/rtsp_play.rilldump" & pids+=($!)
"$BIN/rill-replay" record --listen $HPLAY --to $HTTP --kind http --out "$DIR/rtsp_http_flv_play.rilldump" & pids+=($!)
sleep 1
# The arguments of the e2e tests' ffmpeg_publish_rtsp, with -t 3.
ffmpeg -hide_banner -loglevel error -nostdin -re -t 3 -i "$MEDIA" -c copy \
    -f rtsp -rtsp_transport tcp rtsp://$PUB/live/r & push=$!
sleep 1
ffmpeg -hide_banner -loglevel error -nostdin -rtsp_transport tcp -i rtsp://$PLAY/live/r \
    -t 2 -c copy -f null - & rplay=$!
ffprobe -v error -show_entries stream=codec_name http://$HPLAY/live/r.flv
wait $push
wait $rplay || true
sleep 1
ls -l "$DIR"/rtsp_*.rilldump
