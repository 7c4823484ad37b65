//! The open-file limit: every connection is a file descriptor, and the usual soft limit (1024)
//! is far below rill's default `max_connections`. Go servers raise it at start (the Go runtime
//! does so itself); rill does the same, and says so when the configured limit still does not fit.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tracing::{info, warn};

/// Descriptors kept aside for listeners, the poller, RTSP UDP ports, HLS and dump files.
pub const RESERVED_FDS: u64 = 256;

/// Where Linux caps the open-file limit by default (`fs.nr_open`), used when the hard limit is
/// unlimited: asking for more than that fails.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard one and warns when `max_connections` (0 means no
/// limit) cannot be reached with what remains.
pub fn raise_open_file_limit(max_connections: u32) {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(NR_OPEN_DEFAULT);
    let mut open_files = limit.current;
    if open_files.is_some_and(|soft| soft < hard) {
        let raised = Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                info!(
                    "open-file limit raised from {} to {hard}",
                    open_files.unwrap_or(0)
                );
                open_files = Some(hard);
            }
            Err(e) => warn!("cannot raise the open-file limit to {hard}: {e}"),
        }
    }
    if let Some(short) = connections_short(max_connections, open_files) {
        warn!(
            "[limits] max_connections = {max_connections} needs about {} open files but the \
             limit is {}: the last {short} connections would fail at accept; raise the hard \
             limit (ulimit -Hn, LimitNOFILE=) or lower max_connections",
            u64::from(max_connections) + RESERVED_FDS,
            open_files.unwrap_or(0)
        );
    }
}

/// How many of `max_connections` do not fit in `open_files` once [`RESERVED_FDS`] are set
/// aside; `None` when they all fit, or when either side is unlimited.
fn connections_short(max_connections: u32, open_files: Option<u64>) -> Option<u64> {
    let open_files = open_files?;
    if max_connections == 0 {
        return None;
    }
    let room = open_files.saturating_sub(RESERVED_FDS);
    u64::from(max_connections)
        .checked_sub(room)
        .filter(|short| *short > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_counts_reserved_descriptors() {
        assert_eq!(connections_short(20_000, Some(1024)), Some(20_000 - 768));
        assert_eq!(connections_short(20_000, Some(20_256)), None);
        assert_eq!(connections_short(20_000, Some(20_255)), Some(1));
        assert_eq!(connections_short(10, Some(100)), Some(10));
    }

    #[test]
    fn unlimited_on_either_side_never_warns() {
        assert_eq!(connections_short(0, Some(1024)), None);
        assert_eq!(connections_short(20_000, None), None);
    }

    #[test]
    fn soft_limit_is_raised_to_the_hard_one() {
        raise_open_file_limit(0);
        let after = getrlimit(Resource::Nofile);
        let hard = after.maximum.unwrap_or(NR_OPEN_DEFAULT);
        assert!(after.current.is_none() || after.current == Some(hard));
    }
}
