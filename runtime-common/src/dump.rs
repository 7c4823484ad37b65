//! Recording debug dumps ([`rill_core::dump`] format) of connections as the runtimes serve them.
//!
//! A [`DumpWriter`] writes one connection's dump to one file. A [`DumpRecorder`] keeps one per
//! connection for a runtime: the runtime reports accepts, reads, session starts and closes.
//!
//! Filtering by stream: which stream a connection is about is known only once its session starts
//! (after the RTMP `publish`/`play` or the HTTP request). With a stream filter, a connection is
//! therefore recorded to memory from its first byte (bounded by the size cap) and written to a
//! file only when its session starts on the chosen stream; it is dropped when its session is about
//! another stream or when it closes without a session. Without a filter every connection is
//! written to its file from the start, so a connection that crashes the parser is kept too.
//!
//! Files are named `{start unix ms}-{conn}-{listener}.rilldump` in the configured directory.
//! Every dump stops growing at its size cap: the last record is then a
//! [`RecordKind::Truncated`] marker and later input is not recorded.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use rill_core::dump::{encode_header, encode_record, DumpHeader, RecordKind, RECORD_HEAD_LEN};

/// Where one dump goes: straight to its file, or to memory until it is known to be wanted.
#[derive(Debug)]
enum Sink {
    File(BufWriter<File>),
    Memory(BytesMut),
}

/// One connection's dump, written to one file (or held in memory, see [`DumpWriter::in_memory`]).
///
/// Writes are buffered; [`DumpWriter::finish`] (or dropping the writer) flushes them.
#[derive(Debug)]
pub struct DumpWriter {
    path: PathBuf,
    sink: Sink,
    written: u64,
    max_bytes: u64,
    capped: bool,
    scratch: BytesMut,
}

impl DumpWriter {
    /// Creates `path` (and its directory) and writes the header. `max_bytes` caps the file,
    /// header included (a cap below the header size still writes the header).
    pub fn create(path: &Path, header: &DumpHeader, max_bytes: u64) -> io::Result<DumpWriter> {
        let mut w = DumpWriter::in_memory(path, header, max_bytes);
        w.persist()?;
        Ok(w)
    }

    /// A dump kept in memory until [`DumpWriter::persist`] writes it to `path`.
    pub fn in_memory(path: &Path, header: &DumpHeader, max_bytes: u64) -> DumpWriter {
        let mut buf = BytesMut::new();
        encode_header(header, &mut buf);
        DumpWriter {
            path: path.to_owned(),
            written: buf.len() as u64,
            sink: Sink::Memory(buf),
            max_bytes,
            capped: false,
            scratch: BytesMut::new(),
        }
    }

    /// The dump's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the dump so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// True once the size cap stopped the recording.
    pub fn is_capped(&self) -> bool {
        self.capped
    }

    /// Writes what is held in memory to the file and goes on writing there.
    pub fn persist(&mut self) -> io::Result<()> {
        if let Sink::Memory(buf) = &self.sink {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = BufWriter::with_capacity(64 * 1024, File::create(&self.path)?);
            f.write_all(buf)?;
            self.sink = Sink::File(f);
        }
        Ok(())
    }

    fn put(&mut self, offset_ms: u64, kind: RecordKind, data: &[u8]) -> io::Result<()> {
        self.scratch.clear();
        encode_record(offset_ms, kind, data, &mut self.scratch);
        self.written += self.scratch.len() as u64;
        match &mut self.sink {
            Sink::File(f) => f.write_all(&self.scratch),
            Sink::Memory(buf) => {
                buf.extend_from_slice(&self.scratch);
                Ok(())
            }
        }
    }

    /// Records bytes read from the peer `offset_ms` after the accept. Past the size cap, writes
    /// one truncation marker and then nothing more.
    pub fn input(&mut self, offset_ms: u64, data: &[u8]) -> io::Result<()> {
        if self.capped {
            return Ok(());
        }
        // Room for this record and, after it, a closing or truncation marker.
        let need = (2 * RECORD_HEAD_LEN + data.len()) as u64;
        if self.written.saturating_add(need) > self.max_bytes {
            self.capped = true;
            return self.put(offset_ms, RecordKind::Truncated, &[]);
        }
        self.put(offset_ms, RecordKind::Input, data)
    }

    /// Records the end of the connection and flushes the file.
    pub fn finish(mut self, offset_ms: u64) -> io::Result<()> {
        self.put(offset_ms, RecordKind::Close, &[])?;
        self.flush()
    }

    /// Flushes buffered writes to the file (nothing for a dump in memory).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

/// What to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpSettings {
    /// Directory of the dump files (created when needed).
    pub dir: PathBuf,
    /// Record only connections whose session is about this stream (`app/stream`, as in the
    /// session log); `None` records every connection.
    pub stream: Option<String>,
    /// Size cap of each dump file, bytes.
    pub max_bytes: u64,
}

#[derive(Debug)]
struct Recording {
    writer: DumpWriter,
    accepted_ms: u64,
    /// The file is wanted: written to disk as it grows.
    kept: bool,
}

/// Records one dump per connection of a runtime (one recorder per worker: connection ids are
/// unique per process). See the module docs for filtering. I/O errors are logged and end that
/// connection's recording; they never disturb the connection.
#[derive(Debug)]
pub struct DumpRecorder {
    settings: DumpSettings,
    conns: HashMap<u64, Recording>,
}

impl DumpRecorder {
    /// A recorder with these settings.
    pub fn new(settings: DumpSettings) -> DumpRecorder {
        DumpRecorder {
            settings,
            conns: HashMap::new(),
        }
    }

    /// Connections being recorded.
    pub fn active(&self) -> usize {
        self.conns.len()
    }

    /// A connection was accepted on `listener` (`"rtmp"`, `"http"`, `"rtsp"`) from `peer`.
    /// `now_ms` is the runtime's clock (the one it gives the engine), `unix_ms` the wall clock.
    pub fn on_accept(
        &mut self,
        conn: u64,
        listener: &str,
        peer: SocketAddr,
        now_ms: u64,
        unix_ms: u64,
    ) {
        let header = DumpHeader {
            listener: listener.to_owned(),
            peer,
            start_unix_ms: unix_ms,
        };
        let name: String = format!("{unix_ms}-{conn}-{listener}.rilldump")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.settings.dir.join(name);
        let kept = self.settings.stream.is_none();
        let writer = if kept {
            match DumpWriter::create(&path, &header, self.settings.max_bytes) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("dump: cannot create {}: {e}", path.display());
                    return;
                }
            }
        } else {
            DumpWriter::in_memory(&path, &header, self.settings.max_bytes)
        };
        self.conns.insert(
            conn,
            Recording {
                writer,
                accepted_ms: now_ms,
                kept,
            },
        );
    }

    /// Bytes were read from `conn` (call before handing them to the engine).
    pub fn on_input(&mut self, conn: u64, data: &[u8], now_ms: u64) {
        let Some(r) = self.conns.get_mut(&conn) else {
            return;
        };
        let offset = now_ms.saturating_sub(r.accepted_ms);
        if let Err(e) = r.writer.input(offset, data) {
            tracing::warn!("dump: cannot write {}: {e}", r.writer.path().display());
            self.conns.remove(&conn);
        }
    }

    /// `conn`'s session started on `stream` (the engine's `SessionStarted` record): with a
    /// stream filter, the dump is written out when it matches and dropped when it does not.
    pub fn on_session(&mut self, conn: u64, stream: &str) {
        let Some(wanted) = self.settings.stream.as_deref() else {
            return;
        };
        let Some(r) = self.conns.get_mut(&conn) else {
            return;
        };
        if r.kept {
            return;
        }
        if stream != wanted {
            self.conns.remove(&conn);
            return;
        }
        r.kept = true;
        if let Err(e) = r.writer.persist() {
            tracing::warn!("dump: cannot write {}: {e}", r.writer.path().display());
            self.conns.remove(&conn);
        }
    }

    /// `conn` ended (either side closed it): the close is recorded and the file flushed. A dump
    /// still waiting for its stream is dropped.
    pub fn on_close(&mut self, conn: u64, now_ms: u64) {
        let Some(r) = self.conns.remove(&conn) else {
            return;
        };
        if !r.kept {
            return;
        }
        let path = r.writer.path().to_owned();
        if let Err(e) = r.writer.finish(now_ms.saturating_sub(r.accepted_ms)) {
            tracing::warn!("dump: cannot write {}: {e}", path.display());
        }
    }

    /// Flushes every open dump (on shutdown, or periodically so a crash loses little).
    pub fn flush(&mut self) {
        for r in self.conns.values_mut() {
            if r.kept {
                if let Err(e) = r.writer.flush() {
                    tracing::warn!("dump: cannot write {}: {e}", r.writer.path().display());
                }
            }
        }
    }
}

/// The wall clock in unix milliseconds, for [`DumpRecorder::on_accept`].
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The recorder the `[dump]` section asks for, if any (one per worker or engine task).
pub fn recorder_from_config(config: &rill_core::config::Config) -> Option<DumpRecorder> {
    let d = &config.dump;
    d.enable.then(|| {
        DumpRecorder::new(DumpSettings {
            dir: PathBuf::from(&d.dir),
            stream: (!d.stream.is_empty()).then(|| d.stream.clone()),
            max_bytes: d.max_bytes,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rill_core::dump::Dump;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rill-dump-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn read(path: &Path) -> Dump {
        Dump::parse(Bytes::from(std::fs::read(path).unwrap())).unwrap()
    }

    const PEER: &str = "127.0.0.1:4000";

    #[test]
    fn records_every_connection_without_a_filter() {
        let dir = temp_dir("all");
        let mut rec = DumpRecorder::new(DumpSettings {
            dir: dir.clone(),
            stream: None,
            max_bytes: 1 << 20,
        });
        rec.on_accept(7, "rtmp", PEER.parse().unwrap(), 1000, 1_700_000_000_000);
        rec.on_input(7, b"abc", 1010);
        rec.on_input(7, b"de", 1500);
        rec.on_close(7, 1600);
        assert_eq!(rec.active(), 0);
        let f = files(&dir);
        assert_eq!(f.len(), 1);
        assert!(f[0].ends_with("1700000000000-7-rtmp.rilldump"));
        let d = read(&f[0]);
        assert_eq!(d.header.listener, "rtmp");
        assert_eq!(d.header.start_unix_ms, 1_700_000_000_000);
        let r: Vec<_> = d
            .records()
            .map(|r| (r.offset_ms, r.kind, r.data.len()))
            .collect();
        assert_eq!(
            r,
            vec![
                (10, RecordKind::Input, 3),
                (500, RecordKind::Input, 2),
                (600, RecordKind::Close, 0)
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stream_filter_keeps_only_matching_sessions() {
        let dir = temp_dir("filter");
        let mut rec = DumpRecorder::new(DumpSettings {
            dir: dir.clone(),
            stream: Some("live/d".into()),
            max_bytes: 1 << 20,
        });
        for conn in 1..=3 {
            rec.on_accept(conn, "http", PEER.parse().unwrap(), 0, 5);
            rec.on_input(conn, b"GET", 1);
        }
        rec.on_session(1, "live/d");
        rec.on_session(2, "live/other");
        rec.on_input(1, b" /", 2);
        for conn in 1..=3 {
            rec.on_close(conn, 3);
        }
        let f = files(&dir);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].ends_with("5-1-http.rilldump"));
        assert_eq!(read(&f[0]).input_bytes(), b"GET /");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn size_cap_stops_the_recording_with_a_marker() {
        let dir = temp_dir("cap");
        let mut rec = DumpRecorder::new(DumpSettings {
            dir: dir.clone(),
            stream: None,
            max_bytes: 200,
        });
        rec.on_accept(1, "rtmp", PEER.parse().unwrap(), 0, 0);
        for i in 0..20 {
            rec.on_input(1, &[i; 30], i.into());
        }
        rec.on_close(1, 50);
        let path = &files(&dir)[0];
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len <= 200, "{len}");
        let kinds: Vec<_> = read(path).records().map(|r| r.kind).collect();
        assert_eq!(
            kinds[kinds.len() - 2..],
            [RecordKind::Truncated, RecordKind::Close]
        );
        assert!(kinds.len() > 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
