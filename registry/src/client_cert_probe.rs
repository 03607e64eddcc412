//! Telling "this registry wants a client certificate" apart from other dropped connections.
//!
//! Under TLS 1.3 a server checks the client's certificate only after the client has finished
//! its side of the handshake, so a client without an acceptable certificate sees, at its first
//! read and racing with its request, a closed connection, a closed channel or an alert already
//! turned into text. None of those say why. When a request to an HTTPS registry fails that way,
//! one more handshake, which records whether the server sent a `CertificateRequest`, gives a
//! definite answer for the error message.
//!
//! The probe sends no request and no credentials, only a handshake, so it accepts any server
//! certificate: whether that certificate is trusted is decided (and reported) by the real
//! connection, not here.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WantsClientCert};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, ConfigBuilder, DigitallySignedStruct, SignatureScheme,
};

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the TLS server at `host:port` asks clients for a certificate. `false` when it
/// does not, or when that cannot be found out (unreachable, not TLS).
pub(crate) async fn requests_client_certificate(host: String, port: u16) -> bool {
    tokio::task::spawn_blocking(move || probe(&host, port).unwrap_or(false))
        .await
        .unwrap_or(false)
}

fn probe(host: &str, port: u16) -> Option<bool> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let asked = Arc::new(AtomicBool::new(false));
    let builder: ConfigBuilder<ClientConfig, WantsClientCert> =
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let config = builder.with_client_cert_resolver(Arc::new(Recorder(asked.clone())));
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).ok()?;
    let mut connection = ClientConnection::new(Arc::new(config), name).ok()?;
    let address = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()?
        .next()?;
    let mut socket = TcpStream::connect_timeout(&address, PROBE_TIMEOUT).ok()?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    socket.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    while connection.is_handshaking() && !asked.load(Ordering::SeqCst) {
        match connection.complete_io(&mut socket) {
            Ok((0, 0)) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Some(asked.load(Ordering::SeqCst))
}

/// Records that the server asked for a client certificate, and offers none.
#[derive(Debug)]
struct Recorder(Arc<AtomicBool>);

impl ResolvesClientCert for Recorder {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any server certificate (see the module docs: the probe carries nothing) but still
/// checks handshake signatures, so the handshake proceeds as it would for real.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_or_a_plain_tcp_server_does_not_ask_for_a_certificate() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        assert!(!requests_client_certificate("127.0.0.1".to_owned(), port).await);
        server.join().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(!requests_client_certificate("127.0.0.1".to_owned(), closed).await);
    }
}
