//! TLS as a connection [`Transform`]: rustls on buffers, written once for both runtimes.
//!
//! [`TlsServer`] wraps an accepted connection: inbound ciphertext goes into rustls and the
//! plaintext it yields goes on to the engine (and the debug dump); the engine's plaintext is
//! encrypted on its way out, and handshake messages rustls has to send go out the same way.
//! Only TLS 1.2 and 1.3 are offered. Buffering is bounded: rustls refuses records and handshake
//! messages past their size limits, and every call drains what it decrypted or encrypted, so a
//! connection holds at most one record and one engine batch. A peer that sends anything that is
//! not TLS is closed at once; one that never finishes its handshake meets the engine's own
//! deadlines, which run from the accept.
//!
//! [`TlsConfig`] loads `[tls] cert`/`key` once at start; [`write_self_signed`] makes a dev pair.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;

use crate::conn_io::Transform;

/// Plaintext read out of rustls at a time.
const PLAIN_CHUNK: usize = 16 * 1024;

/// The crypto provider: ring, which builds with only a C compiler (aws-lc-rs, rustls' default,
/// needs cmake and nasm too). rustls marks it deprecated because ring has no post-quantum key
/// exchange; X25519 and the NIST curves are what RTMPS/HTTPS clients offer today.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configurations made from one certificate and key: with the HTTP ALPN (the HTTPS
/// listener) and without (RTMPS, RTSPS, which have no registered ALPN name).
#[derive(Clone, Debug)]
pub struct TlsConfig {
    http: Arc<rustls::ServerConfig>,
    other: Arc<rustls::ServerConfig>,
}

impl TlsConfig {
    /// Loads the PEM certificate chain at `cert` and private key at `key`. The error names the
    /// file that is missing, unreadable or holds nothing usable, or says the key does not match
    /// the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsConfig, String> {
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
        let build = |alpn: &[&[u8]]| {
            let mut c = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| format!("tls: {e}"))?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), private.clone_key())
                .map_err(|e| {
                    format!(
                        "tls: key {} does not fit certificate {}: {e}",
                        key.display(),
                        cert.display()
                    )
                })?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok::<_, String>(Arc::new(c))
        };
        Ok(TlsConfig {
            http: build(&[b"http/1.1"])?,
            other: build(&[])?,
        })
    }

    /// A transform for a connection accepted on the HTTPS listener (`http`) or another one.
    pub fn server(&self, http: bool) -> io::Result<TlsServer> {
        let config = if http { &self.http } else { &self.other };
        let mut conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        // Each outbound call drains what it encrypts, so the engine's budget bounds the buffer.
        conn.set_buffer_limit(None);
        Ok(TlsServer { conn })
    }
}

/// The I/O layer for a connection accepted on a listener with `tls` (the listener's TLS
/// configuration, `None` for a plain one) that serves HTTP when `http`: plain, or behind a TLS
/// server transform.
pub fn accepted_io(tls: Option<&TlsConfig>, http: bool) -> io::Result<crate::conn_io::ConnIo> {
    use crate::conn_io::ConnIo;
    Ok(match tls {
        None => ConnIo::plain(),
        Some(tls) => ConnIo::new(Box::new(tls.server(http)?)),
    })
}

/// The server side of one TLS connection (see the module docs).
pub struct TlsServer {
    conn: ServerConnection,
}

impl Transform for TlsServer {
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
        let mut wire = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut wire)?;
        }
        let len = wire.len();
        if len > 0 {
            batch.push(Bytes::from(wire));
        }
        Ok(len)
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

    fn pair(name: &str) -> (std::path::PathBuf, TlsConfig) {
        let dir = std::env::temp_dir().join(format!("rill-tls-{name}-{}", std::process::id()));
        let (cert, key) = write_self_signed(&dir, &[]).unwrap();
        let config = TlsConfig::load(&cert, &key).unwrap();
        (dir, config)
    }

    /// Runs a rustls client against `server` in memory until both are quiet.
    /// (`step` bytes at a time).
    fn pump(
        client: &mut rustls::ClientConnection,
        server: &mut TlsServer,
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
}
