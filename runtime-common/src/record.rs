//! The recordings' files: what both runtimes do with the engine's `Output::AppendFile`,
//! `Output::CloseFile` and `Output::ReplaceFileHead`.
//!
//! A file is created (with its directory, replacing any file of that name) on its first
//! append and kept open until it is closed; every append is written through at once. A file
//! that cannot be created or written is given up: one warning, and later appends to it are
//! dropped until the engine closes it (the stream and its other outputs go on). A closed file's
//! new head (an FLV recording's index) is written on a thread of its own, since the rest of the
//! file is copied behind it: into a temporary file beside it, renamed over it when complete.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use tracing::warn;

/// Buffer that gathers one append's pieces into few writes.
const WRITE_BUFFER: usize = 64 * 1024;

/// The open recording files of one worker, by path.
#[derive(Debug, Default)]
pub struct RecordFiles {
    open: HashMap<String, BufWriter<File>>,
    /// Files given up after an error, until their close.
    failed: HashSet<String>,
    /// Head replacements under way, waited for at shutdown.
    rewrites: Vec<std::thread::JoinHandle<()>>,
}

impl RecordFiles {
    /// No files open.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many files are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Appends `data` to `path`, creating it (and its directory) on first use.
    pub fn append(&mut self, path: &str, data: &[Bytes]) {
        if self.failed.contains(path) {
            return;
        }
        let result = match self.open.get_mut(path) {
            Some(f) => write_all(f, data),
            None => create(path).and_then(|mut f| {
                let r = write_all(&mut f, data);
                self.open.insert(path.to_owned(), f);
                r
            }),
        };
        if let Err(e) = result {
            warn!("recording {path} stopped: {e}");
            self.open.remove(path);
            self.failed.insert(path.to_owned());
        }
    }

    /// Closes `path` (nothing happens if it is not open).
    pub fn close(&mut self, path: &str) {
        self.failed.remove(path);
        if let Some(f) = self.open.remove(path) {
            finish(path, f);
        }
    }

    /// Replaces the first `len` bytes of the closed file `path` with `head` (on a thread; the
    /// file stays as it was if that fails).
    pub fn replace_head(&mut self, path: &str, len: u64, head: Bytes) {
        if self.failed.contains(path) || self.open.contains_key(path) {
            return;
        }
        self.rewrites.retain(|t| !t.is_finished());
        let path = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("rill-record-index".into())
            .spawn(move || {
                if let Err(e) = rewrite_head(Path::new(&path), len, &head) {
                    warn!("recording {path}: index not written: {e}");
                }
            });
        match spawned {
            Ok(t) => self.rewrites.push(t),
            Err(e) => warn!("recording: index not written: {e}"),
        }
    }

    /// Closes every open file and waits for the head replacements under way (at shutdown).
    pub fn close_all(&mut self) {
        self.failed.clear();
        for (path, f) in self.open.drain() {
            finish(&path, f);
        }
        for t in self.rewrites.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RecordFiles {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn create(path: &str) -> io::Result<BufWriter<File>> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?))
}

fn write_all(f: &mut BufWriter<File>, data: &[Bytes]) -> io::Result<()> {
    for piece in data {
        f.write_all(piece)?;
    }
    f.flush()
}

/// Writes `head` then `path` from byte `len` on into `path.tmp`, and renames it over `path`.
fn rewrite_head(path: &Path, len: u64, head: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut src = File::open(path)?;
        if src.metadata()?.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file is shorter than the head to replace",
            ));
        }
        src.seek(SeekFrom::Start(len))?;
        let mut dst = BufWriter::with_capacity(WRITE_BUFFER, File::create(&tmp)?);
        dst.write_all(head)?;
        io::copy(&mut src, &mut dst)?;
        dst.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn finish(path: &str, f: BufWriter<File>) {
    if let Err(e) = f.into_inner().map_err(|e| e.into_error()) {
        warn!("recording {path}: last bytes not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rill-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn appends_create_the_file_and_its_directory() {
        let dir = temp_dir("append");
        let path = dir.join("live/a-1.flv");
        let path = path.to_str().expect("utf-8 temp path");
        let mut files = RecordFiles::new();
        files.append(
            path,
            &[Bytes::from_static(b"FLV"), Bytes::from_static(b"1")],
        );
        files.append(path, &[Bytes::from_static(b"23")]);
        assert_eq!(files.open_count(), 1);
        assert_eq!(std::fs::read(path).unwrap(), b"FLV123");
        files.close(path);
        assert_eq!(files.open_count(), 0);
        // Closing twice, or closing what never opened, is harmless.
        files.close(path);
        files.close("/nonexistent/never.flv");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_closed_file_gets_its_new_head_and_keeps_the_rest() {
        let dir = temp_dir("head");
        let path = dir.join("live/a-1.flv");
        let path = path.to_str().expect("utf-8 temp path");
        let mut files = RecordFiles::new();
        files.append(path, &[Bytes::from_static(b"OLDHEAD|rest of the file")]);
        files.close(path);
        files.replace_head(path, 7, Bytes::from_static(b"a longer new head"));
        files.close_all();
        assert_eq!(
            std::fs::read(path).unwrap(),
            b"a longer new head|rest of the file"
        );
        // A head longer than the file: refused, the file is kept as it was.
        files.replace_head(path, 1000, Bytes::from_static(b"x"));
        files.close_all();
        assert_eq!(
            std::fs::read(path).unwrap(),
            b"a longer new head|rest of the file"
        );
        assert!(!dir.join("live/a-1.flv.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_created_is_given_up_until_closed() {
        let dir = temp_dir("fail");
        std::fs::create_dir_all(&dir).unwrap();
        // A plain file where the directory should be.
        let blocker = dir.join("live");
        std::fs::write(&blocker, b"x").unwrap();
        let path = blocker.join("a-1.ts");
        let path = path.to_str().expect("utf-8 temp path");
        let mut files = RecordFiles::new();
        files.append(path, &[Bytes::from_static(b"ts")]);
        assert_eq!(files.open_count(), 0);
        assert!(files.failed.contains(path));
        files.append(path, &[Bytes::from_static(b"more")]);
        assert_eq!(files.open_count(), 0);
        files.close(path);
        assert!(files.failed.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
