#!/usr/bin/env bash
# The full client matrix (issue 19): every publisher (ffmpeg RTMP / RTSP TCP / RTSP UDP,
# GStreamer RTMP / RTSP) times every player (ffmpeg, GStreamer, VLC, rtmpdump) on every output
# it reads; writes docs/interop-matrix.md and fails on any FAIL cell. About 2 minutes. Then the
# codec cells (HEVC, AV1, Opus, G.711 with a current ffmpeg): docs/codec-matrix.md.
# The main test command (tools/test-all.sh) runs a reduced form (`reduced_matrix`).
# RILL_BIN=target/debug/rill-async bash tools/matrix.sh runs it against the other runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p rill -p rill-async
cargo test -p rill-e2e --test matrix -- --ignored --nocapture full_matrix
RILL_WRITE_DOCS=1 cargo test -p rill-e2e --test matrix -- --nocapture codec_matrix
