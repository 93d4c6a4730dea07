//! A test certificate authority (rcgen) and a TLS front for local stand-ins, so tests reach
//! them over https:// the way production reaches Clerk's API or an OTLP collector, trusting the
//! CA through `SSL_CERT_FILE` as an operator trusts a corporate one.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority of the test's own, written to a PEM file.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    file: tempfile::NamedTempFile,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), cert.pem())?;
        Ok(TestCa { cert, key, file })
    }

    /// The CA's certificate, for `SSL_CERT_FILE`.
    pub fn pem_file(&self) -> &Path {
        self.file.path()
    }

    /// A server identity for `localhost` and `127.0.0.1`, signed by this CA.
    pub fn server_identity(&self) -> Result<native_tls::Identity> {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"], "localhost")?;
        Ok(native_tls::Identity::from_pkcs8(
            cert.as_bytes(),
            key.as_bytes(),
        )?)
    }

    /// A certificate for `names` (host names or IP addresses) with the common name `cn`, signed
    /// by this CA: its PEM and its private key's (PKCS#8) PEM.
    pub fn issue(&self, names: &[&str], cn: &str) -> Result<(String, String)> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Terminates TLS on a port of its own and passes the bytes to a plain stand-in (wiremock, the
/// OTLP collector), which keeps its own way of describing answers.
pub struct TlsFront {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(identity: native_tls::Identity, upstream: SocketAddr) -> Result<Self> {
        let acceptor = tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(identity)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to pass.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsFront { port, task })
    }

    /// `https://localhost:<port>`: the name the certificate is for.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
