//! `/metrics`: every engine's snapshot added up, in the Prometheus text exposition format.

use std::fmt::Write as _;

use super::merge;
use crate::engine::{EngineStats, Protocol, Role};
use crate::hls::HlsMemory;

/// The Prometheus text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus text of every engine's snapshot added up.
pub fn render_metrics(snapshots: &[EngineStats]) -> String {
    const PROTOCOLS: [Protocol; 8] = [
        Protocol::Rtmp,
        Protocol::HttpFlv,
        Protocol::WsFlv,
        Protocol::HttpTs,
        Protocol::WsTs,
        Protocol::HttpFmp4,
        Protocol::WsFmp4,
        Protocol::Rtsp,
    ];
    let sessions = || snapshots.iter().flat_map(|s| &s.sessions);
    let count = |role: Role, p: Protocol, tls: bool| {
        sessions()
            .filter(|s| s.role == role && s.protocol == p && s.tls == tls)
            .count()
    };
    let sum = |f: fn(&EngineStats) -> u64| {
        snapshots
            .iter()
            .map(f)
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let streams = merge(snapshots)
        .iter()
        .filter(|g| g.publisher.is_some() || g.pull.is_some())
        .count();
    let mut out = String::with_capacity(1024);
    // Writing to a String cannot fail.
    let mut metric = |name: &str, kind: &str, help: &str, values: &[(Option<&str>, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (label, v) in values {
            match label {
                Some(p) => {
                    let _ = writeln!(out, "{name}{{protocol=\"{p}\"}} {v}");
                }
                None => {
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
    };
    metric(
        "rill_streams",
        "gauge",
        "Streams with a live publisher or a relay pull.",
        &[(None, streams as u64)],
    );
    // Labels are the protocols' names in lowercase: `rtmp`, `http-flv`, ..., `rtmps`, `wss-flv`.
    let labels: Vec<(Protocol, bool, String)> = [false, true]
        .into_iter()
        .flat_map(|tls| PROTOCOLS.map(|p| (p, tls, p.name(tls).to_ascii_lowercase())))
        .collect();
    let by_protocol = |role: Role| -> Vec<(Option<&str>, u64)> {
        labels
            .iter()
            .map(|(p, tls, label)| (Some(label.as_str()), count(role, *p, *tls) as u64))
            .collect()
    };
    metric(
        "rill_publishers",
        "gauge",
        "Publishing sessions, by protocol.",
        &by_protocol(Role::Publish),
    );
    metric(
        "rill_players",
        "gauge",
        "Playing sessions, by protocol.",
        &by_protocol(Role::Play),
    );
    metric(
        "rill_relay_pulls",
        "gauge",
        "Streams pulled from other servers (relay pulls, connected or retrying), by protocol.",
        &by_protocol(Role::Pull),
    );
    metric(
        "rill_relay_pushes",
        "gauge",
        "Streams pushed to other servers (relay pushes, connected or retrying), by protocol.",
        &by_protocol(Role::Push),
    );
    metric(
        "rill_connections",
        "gauge",
        "Open connections of every kind.",
        &[(None, sum(|s| s.connections))],
    );
    metric(
        "rill_bytes_in_total",
        "counter",
        "Bytes received on every connection since the server started.",
        &[(None, sum(|s| s.bytes_in))],
    );
    metric(
        "rill_bytes_out_total",
        "counter",
        "Bytes sent on every connection since the server started.",
        &[(None, sum(|s| s.bytes_out))],
    );
    metric(
        "rill_player_skips_total",
        "counter",
        "Times a slow player skipped to the newest key frame ([hub] player_lag_soft_ms, \
         player_queue_soft_bytes).",
        &[(None, sum(|s| s.player_skips))],
    );
    metric(
        "rill_slow_players_closed_total",
        "counter",
        "Players disconnected for falling past [hub] player_lag_hard_ms or \
         player_queue_hard_bytes.",
        &[(None, sum(|s| s.slow_players_closed))],
    );
    let cluster: Vec<&crate::engine::cluster::ClusterStats> = snapshots
        .iter()
        .filter_map(|s| s.cluster.as_ref())
        .collect();
    if !cluster.is_empty() {
        let up = cluster.iter().all(|c| c.connected);
        metric(
            "rill_cluster_redis_up",
            "gauge",
            "1 while Redis answers every worker of this node ([cluster] redis).",
            &[(None, u64::from(up))],
        );
        metric(
            "rill_cluster_owned_streams",
            "gauge",
            "Streams this node holds the registry lease of (origin).",
            &[(None, cluster.iter().map(|c| c.owned).sum())],
        );
        metric(
            "rill_cluster_pulled_streams",
            "gauge",
            "Streams this node pulls from the origin the registry names (edge).",
            &[(None, cluster.iter().map(|c| c.pulled).sum())],
        );
        let nodes = cluster
            .iter()
            .flat_map(|c| &c.registry)
            .filter(|e| e.key.starts_with("rill:node:"))
            .count();
        metric(
            "rill_cluster_nodes",
            "gauge",
            "Nodes alive in the registry, as last read.",
            &[(None, nodes as u64)],
        );
    }
    // Every worker holds the same streams' segments (shared bytes, not copies): the largest
    // worker's figure is what the process holds.
    let hls = snapshots
        .iter()
        .fold(HlsMemory::default(), |a, s| a.max(&s.hls));
    let _ = writeln!(
        out,
        "# HELP rill_hls_memory_bytes Bytes HLS holds in memory, by use ([hls] \
         memory_max_bytes bounds live, record and ended).\n# TYPE rill_hls_memory_bytes gauge"
    );
    for (name, v) in [
        ("live", hls.live),
        ("record", hls.record),
        ("ended", hls.ended),
        ("ll", hls.ll),
    ] {
        let _ = writeln!(out, "rill_hls_memory_bytes{{use=\"{name}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP rill_muxed_frames_total Frames muxed into the streams' shared MPEG-TS and fMP4, \
         each only while HLS, LL-HLS, a player or a recording consumes it.\n\
         # TYPE rill_muxed_frames_total counter"
    );
    for (name, v) in [("ts", sum(|s| s.muxed.ts)), ("fmp4", sum(|s| s.muxed.fmp4))] {
        let _ = writeln!(out, "rill_muxed_frames_total{{format=\"{name}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP rill_hls_evictions_total HLS memory given up early to stay within [hls] \
         memory_max_bytes: ended streams, record segments.\n# TYPE rill_hls_evictions_total counter"
    );
    for (what, v) in [
        ("stream", hls.evicted_streams),
        ("segment", hls.evicted_segments),
    ] {
        let _ = writeln!(out, "rill_hls_evictions_total{{what=\"{what}\"}} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_data::snapshots;
    use crate::api::{answer, Query};

    #[test]
    fn metrics_add_up_every_worker_in_prometheus_text() {
        let text = render_metrics(&snapshots());
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "rill_streams 1",
            "rill_publishers{protocol=\"rtmp\"} 1",
            "rill_publishers{protocol=\"rtsp\"} 0",
            "rill_players{protocol=\"http-flv\"} 1",
            "rill_players{protocol=\"ws-flv\"} 1",
            "rill_players{protocol=\"rtmp\"} 1",
            "rill_players{protocol=\"rtmps\"} 0",
            "rill_players{protocol=\"wss-flv\"} 0",
            "rill_connections 5",
            "rill_relay_pulls{protocol=\"rtmp\"} 0",
            "rill_relay_pushes{protocol=\"rtsp\"} 0",
            "rill_bytes_in_total 10001",
            "rill_bytes_out_total 20002",
            "# TYPE rill_bytes_out_total counter",
            "# TYPE rill_players gauge",
        ] {
            assert!(
                lines.contains(&expected),
                "{expected:?} missing in:\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("rill_"), "{line}");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
        let r = answer(&Query::Metrics, &snapshots()).response;
        let ct = r.headers.iter().find(|(k, _)| k == "Content-Type");
        assert!(ct.is_some_and(|(_, v)| v.starts_with("text/plain")));
    }
}
