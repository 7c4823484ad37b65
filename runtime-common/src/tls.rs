//! TLS as a connection [`Transform`]: rustls on buffers, written once for both runtimes, for
//! accepted connections (the RTMPS, HTTPS and RTSPS listeners) and for the ones rill opens
//! (`rtmps://` relays, `https://` webhooks).
//!
//! [`Tls`] wraps a connection: inbound ciphertext goes into rustls and the plaintext it yields
//! goes on to the engine (and the debug dump); the engine's plaintext is encrypted on its way
//! out, and handshake messages rustls has to send go out the same way. Only TLS 1.2 and 1.3 are
//! offered. Buffering is bounded: rustls refuses records and handshake messages past their size
//! limits, and every call drains what it decrypted or encrypted, so a connection holds at most
//! one record and one engine batch. A peer that sends anything that is not TLS is closed at
//! once; one that never finishes its handshake meets the engine's own deadlines, which run from
//! the accept. Closing sends a `close_notify` alert when the socket can take it.
//!
//! Server side, [`TlsConfig`] loads `[tls] cert`/`key` (and `[[tls.sni]]` pairs chosen by the
//! name the client asks for) and reloads them with the configuration on SIGHUP
//! ([`crate::reload`], which may also name other files: [`TlsConfig::reload_section`]) or when
//! the files change ([`TlsConfig::watch`]): new handshakes get the new certificate, live
//! connections keep theirs, and a pair that does not load is refused with a log line while the
//! old one stays.
//! Client side, [`client_io`] makes the transform an `Output::Connect` asks for: verified
//! against the system's roots unless the target is listed in `[tls] no_verify`.
//! [`write_self_signed`] makes a dev pair.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rill_core::config::TlsSection;
use rill_core::scheme::TlsClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConnection, Connection, ServerConnection};
use tracing::{info, warn};

use crate::conn_io::{ConnIo, Transform};

/// Plaintext read out of rustls at a time.
const PLAIN_CHUNK: usize = 16 * 1024;

/// How often the watcher looks at the certificate files' modification times.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The crypto provider: ring, which builds with only a C compiler (aws-lc-rs, rustls' default,
/// needs cmake and nasm too). rustls marks it deprecated because ring has no post-quantum key
/// exchange; X25519 and the NIST curves are what RTMPS/HTTPS clients offer today.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One certificate chain and key as configured: the files it comes from and the names it is
/// chosen for (none: the default one).
#[derive(Clone, Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    names: Vec<String>,
}

impl CertFiles {
    /// Loads the pair; the error names the file that is missing, unreadable or holds nothing
    /// usable, or says the key does not match the certificate.
    fn load(&self) -> Result<Arc<CertifiedKey>, String> {
        let (cert, key) = (&self.cert, &self.key);
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("tls: cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls: {}: bad PEM certificate: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("tls: {}: no certificate in it", cert.display()));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("tls: {}: no usable private key: {e}", key.display()))?;
        let mismatch = |e: rustls::Error| {
            format!(
                "tls: key {} does not fit certificate {}: {e}",
                key.display(),
                cert.display()
            )
        };
        let signer = provider()
            .key_provider
            .load_private_key(private)
            .map_err(mismatch)?;
        let certified = CertifiedKey::new(chain, signer);
        certified.keys_match().map_err(mismatch)?;
        Ok(Arc::new(certified))
    }

    /// The files' latest modification time (to notice a change).
    fn modified(&self) -> Option<SystemTime> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        m(&self.cert).max(m(&self.key))
    }
}

/// The certificates in use: the default one and those chosen by server name (lowercase).
#[derive(Debug)]
struct Certs {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// What every handshake asks for its certificate: the current [`Certs`], swapped whole on a
/// reload, so a handshake sees either the old set or the new one.
#[derive(Debug)]
struct CertStore {
    /// The files, replaced with the certificates when a reload names other ones.
    files: RwLock<Vec<CertFiles>>,
    current: RwLock<Arc<Certs>>,
}

impl CertStore {
    fn load(files: &[CertFiles]) -> Result<Certs, String> {
        let mut default = None;
        let mut by_name = HashMap::new();
        for f in files {
            let key = f.load()?;
            if f.names.is_empty() {
                default = Some(key);
            } else {
                for n in &f.names {
                    by_name.insert(n.to_ascii_lowercase(), key.clone());
                }
            }
        }
        let default = default.ok_or("tls: no default certificate ([tls] cert and key)")?;
        Ok(Certs { default, by_name })
    }

    /// The files in use.
    fn files(&self) -> Vec<CertFiles> {
        // Poisoned: a reload panicked mid-swap; the vector inside is whole.
        self.files.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads `files`; on success they and their certificates replace the ones in use.
    fn replace(&self, files: Vec<CertFiles>) -> Result<(), String> {
        let certs = CertStore::load(&files)?;
        let mut held = self.files.write().unwrap_or_else(|p| p.into_inner());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certs);
        *held = files;
        Ok(())
    }

    fn certs(&self) -> Arc<Certs> {
        // A poisoned lock only means a reload panicked mid-swap; the Arc inside is whole.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs();
        let named = hello
            .server_name()
            .and_then(|n| certs.by_name.get(&n.to_ascii_lowercase()));
        Some(named.unwrap_or(&certs.default).clone())
    }
}

/// The TLS listeners' server configurations (with the HTTP ALPN for the HTTPS listener, without
/// for RTMPS and RTSPS, which have no registered ALPN name), over one reloadable set of
/// certificates. Clones share it.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    http: Arc<rustls::ServerConfig>,
    other: Arc<rustls::ServerConfig>,
    store: Arc<CertStore>,
}

impl TlsConfig {
    /// Loads the PEM certificate chain at `cert` and private key at `key`. The error names the
    /// file that is missing, unreadable or holds nothing usable, or says the key does not match
    /// the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsConfig, String> {
        TlsConfig::load_all(vec![CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            names: Vec::new(),
        }])
    }

    /// Loads `[tls]`: its default pair and its `[[tls.sni]]` pairs.
    pub fn from_section(t: &TlsSection) -> Result<TlsConfig, String> {
        TlsConfig::load_all(section_files(t))
    }

    fn load_all(files: Vec<CertFiles>) -> Result<TlsConfig, String> {
        let certs = CertStore::load(&files)?;
        let store = Arc::new(CertStore {
            files: RwLock::new(files),
            current: RwLock::new(Arc::new(certs)),
        });
        let build = |alpn: &[&[u8]]| {
            let mut c = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| format!("tls: {e}"))?
                .with_no_client_auth()
                .with_cert_resolver(store.clone());
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok::<_, String>(Arc::new(c))
        };
        Ok(TlsConfig {
            http: build(&[b"http/1.1"])?,
            other: build(&[])?,
            store,
        })
    }

    /// Loads the configured files again; on success new handshakes use them, on failure the
    /// certificates in use stay and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        self.store.replace(self.store.files())
    }

    /// Loads the files `[tls]` names now (a config reload may name other ones); on success
    /// they replace the ones in use for new handshakes, on failure nothing changes.
    pub fn reload_section(&self, t: &TlsSection) -> Result<(), String> {
        self.store.replace(section_files(t))
    }

    /// Starts the thread that reloads the certificates when a file's modification time changes
    /// (looked at every second), logging each reload or refusal. SIGHUP reloads them with the
    /// rest of the configuration ([`crate::reload::Reloader`]).
    pub fn watch(&self) -> io::Result<()> {
        let this = self.clone();
        let stamps =
            |c: &TlsConfig| -> Vec<_> { c.store.files().iter().map(CertFiles::modified).collect() };
        let mut seen = stamps(&this);
        std::thread::Builder::new()
            .name("rill-tls-watch".into())
            .spawn(move || loop {
                std::thread::sleep(WATCH_EVERY);
                let now = stamps(&this);
                if now == seen {
                    continue;
                }
                seen = now;
                match this.reload() {
                    Ok(()) => info!("tls: certificates reloaded (changed files)"),
                    Err(e) => {
                        warn!("tls: reload (changed files) refused, the old certificates stay: {e}")
                    }
                }
            })?;
        Ok(())
    }

    /// A transform for a connection accepted on the HTTPS listener (`http`) or another one.
    pub fn server(&self, http: bool) -> io::Result<Tls> {
        let config = if http { &self.http } else { &self.other };
        let conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(Tls::new(conn.into()))
    }
}

/// The pairs `[tls]` names: its default one and its `[[tls.sni]]` ones.
fn section_files(t: &TlsSection) -> Vec<CertFiles> {
    let default = CertFiles {
        cert: t.cert.clone().into(),
        key: t.key.clone().into(),
        names: Vec::new(),
    };
    let named = t.sni.iter().map(|s| CertFiles {
        cert: s.cert.clone().into(),
        key: s.key.clone().into(),
        names: s.names.clone(),
    });
    std::iter::once(default).chain(named).collect()
}

/// The I/O layer for a connection accepted on a listener with `tls` (the listener's TLS
/// configuration, `None` for a plain one) that serves HTTP when `http`: plain, or behind a TLS
/// server transform.
pub fn accepted_io(tls: Option<&TlsConfig>, http: bool) -> io::Result<ConnIo> {
    Ok(match tls {
        None => ConnIo::plain(),
        Some(tls) => ConnIo::new(Box::new(tls.server(http)?)),
    })
}

/// The client configurations, made once: verifying against the system's roots, and not
/// verifying (for `[tls] no_verify` targets).
struct ClientConfigs {
    verified: Arc<rustls::ClientConfig>,
    unverified: Arc<rustls::ClientConfig>,
}

/// The client configurations, built at first use (the roots are read once per process).
fn client_configs() -> Result<&'static ClientConfigs, String> {
    static CONFIGS: OnceLock<Result<ClientConfigs, String>> = OnceLock::new();
    CONFIGS
        .get_or_init(|| {
            // rustls-native-certs reads the system's bundle (Debian: /etc/ssl/certs, kept by
            // ca-certificates, or SSL_CERT_FILE/SSL_CERT_DIR), so operators manage trust as for
            // curl; a bundle compiled into the binary would go stale with it.
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!("tls: system roots: {e}");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            info!(
                added,
                ignored, "tls: system roots loaded for outbound connections"
            );
            let builder = || {
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| format!("tls: {e}"))
            };
            let verified = builder()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let unverified = builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
                .with_no_client_auth();
            Ok(ClientConfigs {
                verified: Arc::new(verified),
                unverified: Arc::new(unverified),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The I/O layer for a connection rill opens (`Output::Connect`): plain, or behind a TLS client
/// transform for `tls`. The error (a bad server name, no usable configuration) fails the
/// connection.
pub fn client_io(tls: Option<&TlsClient>) -> Result<ConnIo, String> {
    let Some(tls) = tls else {
        return Ok(ConnIo::plain());
    };
    let configs = client_configs()?;
    let config = if tls.verify {
        &configs.verified
    } else {
        &configs.unverified
    };
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("tls: bad server name {:?}: {e}", tls.server_name))?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("tls: {e}"))?;
    Ok(ConnIo::new(Box::new(Tls::new(conn.into()))))
}

/// Warns once at start about every outbound target whose certificate is not verified.
pub fn warn_unverified(t: &TlsSection) {
    for target in &t.no_verify {
        warn!("tls: certificates of {target} are NOT verified ([tls] no_verify)");
    }
}

/// A verifier that accepts any certificate (signatures are still checked, so the peer holds
/// the key of the certificate it shows): for self-signed origins the operator listed.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One TLS connection, server or client side (see the module docs).
pub struct Tls {
    conn: Connection,
}

impl Tls {
    fn new(mut conn: Connection) -> Tls {
        // Each outbound call drains what it encrypts, so the engine's budget bounds the buffer.
        // (A client's plaintext written before its handshake ends waits here: one engine batch.)
        conn.set_buffer_limit(None);
        Tls { conn }
    }

    fn drain_tls(&mut self) -> io::Result<Vec<u8>> {
        let mut wire = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut wire)?;
        }
        Ok(wire)
    }
}

impl Transform for Tls {
    fn inbound(&mut self, wire: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        let mut rest = wire;
        let mut buf = [0u8; PLAIN_CHUNK];
        while !rest.is_empty() {
            if self.conn.read_tls(&mut rest)? == 0 {
                return Err(io::Error::other("TLS input not taken"));
            }
            let state = self.conn.process_new_packets().map_err(io::Error::other)?;
            let mut left = state.plaintext_bytes_to_read();
            while left > 0 {
                let n = self.conn.reader().read(&mut buf[..left.min(PLAIN_CHUNK)])?;
                if n == 0 {
                    break;
                }
                plain(&buf[..n]);
                left -= n;
            }
            if state.peer_has_closed() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "TLS close_notify",
                ));
            }
        }
        Ok(self.conn.wants_write())
    }

    fn outbound(&mut self, batch: &mut Vec<Bytes>, plain_len: usize) -> io::Result<usize> {
        if plain_len > 0 {
            let mut writer = self.conn.writer();
            for b in batch.iter() {
                writer.write_all(b)?;
            }
        }
        batch.clear();
        let wire = self.drain_tls()?;
        let len = wire.len();
        if len > 0 {
            batch.push(Bytes::from(wire));
        }
        Ok(len)
    }

    fn encrypted(&self) -> bool {
        true
    }

    fn close(&mut self) -> Option<Bytes> {
        self.conn.send_close_notify();
        let wire = self.drain_tls().ok()?;
        (!wire.is_empty()).then(|| Bytes::from(wire))
    }
}

/// Writes a self-signed certificate (`cert.pem`) and its key (`key.pem`) for `hosts` into `dir`
/// (created if missing), for development and tests. Returns the two paths.
pub fn write_self_signed(
    dir: &Path,
    hosts: &[String],
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let hosts = if hosts.is_empty() {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        hosts.to_vec()
    };
    let made = rcgen::generate_simple_self_signed(hosts)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&cert, made.cert.pem())?;
    write(&key, made.key_pair.serialize_pem())?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (PathBuf, TlsConfig) {
        let dir = std::env::temp_dir().join(format!("rill-tls-{name}-{}", std::process::id()));
        let (cert, key) = write_self_signed(&dir, &[]).unwrap();
        let config = TlsConfig::load(&cert, &key).unwrap();
        (dir, config)
    }

    /// Runs a rustls client against `server` in memory until both are quiet.
    /// (`step` bytes at a time).
    fn pump(
        client: &mut rustls::ClientConnection,
        server: &mut Tls,
        got: &mut Vec<u8>,
        step: usize,
    ) {
        for _ in 0..20 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            for piece in wire.chunks(step) {
                server
                    .inbound(piece, &mut |p| got.extend_from_slice(p))
                    .unwrap();
            }
            let mut batch = Vec::new();
            server.outbound(&mut batch, 0).unwrap();
            for b in batch {
                let mut rd = &b[..];
                while !rd.is_empty() {
                    client.read_tls(&mut rd).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
        }
    }

    #[derive(Debug)]
    struct AnyCert;

    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    fn client(alpn: &[u8]) -> rustls::ClientConnection {
        let mut cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        cc.alpn_protocols = vec![alpn.to_vec()];
        rustls::ClientConnection::new(Arc::new(cc), "localhost".try_into().unwrap()).unwrap()
    }

    #[test]
    fn plaintext_crosses_both_ways_with_alpn_on_http() {
        let (dir, config) = pair("roundtrip");
        let mut server = config.server(true).unwrap();
        let mut client = client(b"http/1.1");
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        pump(&mut client, &mut server, &mut got, usize::MAX);
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut batch = vec![Bytes::from_static(b"HTTP/1.1 200 OK\r\n"), Bytes::new()];
        let n = server.outbound(&mut batch, 17).unwrap();
        assert!(n > 17, "encrypted with record overhead");
        let mut rd = &batch[0][..];
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets().unwrap();
        let mut back = [0u8; 64];
        let k = client.reader().read(&mut back).unwrap();
        assert_eq!(&back[..k], b"HTTP/1.1 200 OK\r\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_handshake_fed_a_byte_at_a_time_completes() {
        let (dir, config) = pair("trickle");
        let mut server = config.server(false).unwrap();
        let mut client = client(b"x");
        client.writer().write_all(b"hello").unwrap();
        let mut got = Vec::new();
        pump(&mut client, &mut server, &mut got, 1);
        assert_eq!(got, b"hello");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_is_buffered() {
        let (dir, config) = pair("oversized");
        let mut server = config.server(false).unwrap();
        // A handshake record header announcing 65535 bytes (TLS allows 16 KiB + expansion).
        let r = server.inbound(&[22, 3, 1, 0xFF, 0xFF, 1, 2, 3], &mut |_| {});
        assert!(r.is_err(), "{r:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn plain_text_on_a_tls_connection_is_an_error() {
        let (dir, config) = pair("garbage");
        let mut server = config.server(false).unwrap();
        let mut seen = false;
        let r = server.inbound(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut |_| seen = true);
        assert!(r.is_err());
        assert!(!seen, "nothing reaches the engine");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_file() {
        let (dir, _) = pair("errors");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let missing = dir.join("nope.pem");
        let e = TlsConfig::load(&missing, &key).unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
        let e = TlsConfig::load(&key, &key).unwrap_err();
        assert!(e.contains("key.pem"), "{e}");
        let e = TlsConfig::load(&cert, &cert).unwrap_err();
        assert!(e.contains("cert.pem"), "{e}");
        let other = dir.join("other");
        let (_, key2) = write_self_signed(&other, &["example.org".into()]).unwrap();
        let e = TlsConfig::load(&cert, &key2).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Moves bytes between two I/O layers until both are quiet; returns what each got.
    fn pump_io(a: &mut ConnIo, b: &mut ConnIo) -> io::Result<(Vec<u8>, Vec<u8>)> {
        fn step(from: &mut ConnIo, to: &mut ConnIo, got: &mut Vec<u8>) -> io::Result<()> {
            let mut batch = Vec::new();
            from.outbound(&mut batch, 0)?;
            for piece in batch {
                to.inbound(&piece, &mut |p| got.extend_from_slice(p))?;
            }
            Ok(())
        }
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            step(a, b, &mut got_b)?;
            step(b, a, &mut got_a)?;
        }
        Ok((got_a, got_b))
    }

    fn target(verify: bool) -> TlsClient {
        TlsClient {
            server_name: "localhost".into(),
            verify,
        }
    }

    #[test]
    fn a_client_transform_talks_to_the_server_transform() {
        let (dir, config) = pair("client");
        let mut server = accepted_io(Some(&config), false).unwrap();
        let mut client = client_io(Some(&target(false))).unwrap();
        // The engine's first bytes come before the handshake is over: the transform holds them.
        let mut first = vec![Bytes::from_static(b"C0C1")];
        client.outbound(&mut first, 4).unwrap();
        let mut first = first.concat();
        server
            .inbound(&std::mem::take(&mut first), &mut |_| {
                panic!("no plaintext yet")
            })
            .unwrap();
        let (_, at_server) = pump_io(&mut client, &mut server).unwrap();
        assert_eq!(at_server, b"C0C1");
        let close = client.close_bytes().expect("close_notify");
        let r = server.inbound(&close, &mut |_| {});
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_verifying_client_refuses_a_self_signed_server() {
        let (dir, config) = pair("verify");
        let mut server = accepted_io(Some(&config), false).unwrap();
        let mut client = client_io(Some(&target(true))).unwrap();
        assert!(pump_io(&mut client, &mut server).is_err());
        assert!(client_io(None).is_ok(), "plain needs nothing");
        let bad = TlsClient {
            server_name: "not a name".into(),
            verify: true,
        };
        assert!(client_io(Some(&bad)).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The certificate a fresh handshake with `config` presents, for server name `sni`.
    fn presented(config: &TlsConfig, sni: &str) -> Vec<u8> {
        let mut server = config.server(false).unwrap();
        let name = sni.to_owned().try_into().unwrap();
        let mut cc = rustls::ClientConnection::new(Arc::new(cc_config()), name).unwrap();
        pump(&mut cc, &mut server, &mut Vec::new(), usize::MAX);
        cc.peer_certificates().expect("handshake done")[0].to_vec()
    }

    fn cc_config() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth()
    }

    #[test]
    fn reload_takes_a_new_pair_and_refuses_a_bad_one() {
        let (dir, config) = pair("reload");
        let before = presented(&config, "localhost");
        // A live connection made before the reload.
        let mut live = config.server(false).unwrap();
        let mut live_client = client(b"x");
        pump(&mut live_client, &mut live, &mut Vec::new(), usize::MAX);
        write_self_signed(&dir, &["localhost".into()]).unwrap();
        config.reload().unwrap();
        let after = presented(&config, "localhost");
        assert_ne!(before, after, "new handshakes get the new certificate");
        live_client.writer().write_all(b"still here").unwrap();
        let mut got = Vec::new();
        pump(&mut live_client, &mut live, &mut got, usize::MAX);
        assert_eq!(got, b"still here", "the live connection goes on");
        std::fs::write(dir.join("key.pem"), b"garbage").unwrap();
        let e = config.reload().unwrap_err();
        assert!(e.contains("key.pem"), "{e}");
        assert_eq!(presented(&config, "localhost"), after, "the old pair stays");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sni_picks_the_certificate_named_for_the_host() {
        let (dir, _) = pair("sni");
        let other = dir.join("other");
        let (cert2, key2) = write_self_signed(&other, &["live.example".into()]).unwrap();
        let section = TlsSection {
            cert: dir.join("cert.pem").display().to_string(),
            key: dir.join("key.pem").display().to_string(),
            sni: vec![rill_core::config::TlsSniSection {
                names: vec!["Live.Example".into()],
                cert: cert2.display().to_string(),
                key: key2.display().to_string(),
            }],
            ..TlsSection::default()
        };
        let config = TlsConfig::from_section(&section).unwrap();
        let named = presented(&config, "live.example");
        let default = presented(&config, "localhost");
        assert_ne!(named, default);
        let pem = std::fs::read(&cert2).unwrap();
        let want = CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(named, want.to_vec());
        let _ = std::fs::remove_dir_all(dir);
    }
}
