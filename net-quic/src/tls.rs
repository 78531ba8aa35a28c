//! Mutual TLS: [`TlsConfig`] (the cluster CA, this member's certificate and key) and the
//! [`DevCa`] helper that makes them.
//!
//! **How an id is bound to a certificate.** A member's certificate, signed by the cluster
//! CA, carries the subject alternative name URI `conclave://node/<id>` (decimal), exactly
//! one of them. Every connection is mutually authenticated against the cluster CA; the id
//! read from the peer's certificate is the only id the connection may speak for. All
//! member certificates also carry the DNS name [`SERVER_NAME`], the name clients verify
//! (a member is dialled by address before its id is known).

use std::path::Path;
use std::sync::Arc;

use conclave_core::NodeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The DNS name in every member certificate, which clients check.
pub const SERVER_NAME: &str = "node.conclave";
/// The prefix of the URI that names a member in its certificate.
pub const ID_URI_PREFIX: &str = "conclave://node/";
/// The ALPN protocol id of conclave's QUIC connections.
pub(crate) const ALPN: &[u8] = b"conclave/1";

/// This member's TLS material: the cluster CA it trusts, its certificate chain and key.
#[derive(Debug)]
pub struct TlsConfig {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        Self { ca: self.ca.clone(), chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl TlsConfig {
    /// Reads the CA certificate, this member's certificate chain and its private key from
    /// PEM files. A missing, empty or unparsable file is a readable error.
    pub fn from_pem_files(ca: impl AsRef<Path>, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::TlsFile { path: path.to_path_buf(), why: e.to_string() })
        };
        let (ca, cert, key) = (ca.as_ref(), cert.as_ref(), key.as_ref());
        let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
        let file_error = |path: &Path, why: String| Error::TlsFile { path: path.to_path_buf(), why };
        let ca = first_cert(&ca_pem).map_err(|why| file_error(ca, why))?;
        let chain = certs(&cert_pem).map_err(|why| file_error(cert, why))?;
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| file_error(key, format!("no private key: {e}")))?;
        Ok(Self { ca, chain, key })
    }

    /// The same from PEM text in memory.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Self, Error> {
        let ca = first_cert(ca.as_bytes()).map_err(|why| Error::Tls(format!("CA: {why}")))?;
        let chain = certs(cert.as_bytes()).map_err(|why| Error::Tls(format!("certificate: {why}")))?;
        let key =
            PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| Error::Tls(format!("no private key: {e}")))?;
        Ok(Self { ca, chain, key })
    }

    /// The member id this configuration's certificate is bound to.
    pub fn node_id(&self) -> Option<NodeId> {
        self.chain.first().and_then(node_id_of)
    }

    /// Secret bytes this member's stateless-reset key is derived from (its private key),
    /// the same across restarts.
    pub(crate) fn reset_key_material(&self) -> Vec<u8> {
        let mut material = b"conclave stateless reset\0".to_vec();
        material.extend_from_slice(self.key.secret_der());
        material
    }

    /// The quinn configurations for both sides of a connection: TLS 1.3 only, the peer must
    /// show a certificate from the cluster CA, no session resumption.
    pub fn quinn_configs(&self) -> Result<(quinn::ServerConfig, quinn::ClientConfig), Error> {
        let tls = |e: rustls::Error| Error::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(tls)?;
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        // No resumption: every handshake shows the client's certificate again, and every
        // handshake is the same size (the simulator's runs repeat exactly).
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        let server =
            quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(|e| Error::Tls(e.to_string()))?;
        let client =
            quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| Error::Tls(e.to_string()))?;
        Ok((quinn::ServerConfig::with_crypto(Arc::new(server)), quinn::ClientConfig::new(Arc::new(client))))
    }
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no certificate".into());
    }
    Ok(chain)
}

fn first_cert(pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    certs(pem).map(|mut chain| chain.swap_remove(0))
}

/// The member id a certificate is bound to: its one `conclave://node/<id>` URI, if it has
/// exactly one. Any bytes are safe.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(ID_URI_PREFIX),
        _ => None,
    });
    let id = ids.next()?;
    if ids.next().is_some() {
        return None;
    }
    id.parse().ok().map(NodeId)
}

/// The id of the peer of an authenticated connection.
pub(crate) fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().and_then(node_id_of)
}

/// A development certificate authority: makes a cluster CA and member certificates
/// (Ed25519) with rcgen. For tests, examples and trying things out; production clusters
/// bring their own CA and load PEM files with [`TlsConfig::from_pem_files`].
pub struct DevCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A member certificate and its key, in PEM.
#[derive(Clone, Debug)]
pub struct NodeCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Tls(e.to_string())
}

impl DevCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(rcgen_error)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        // A fixed serial: every certificate of a kind has the same length.
        params.serial_number = Some(rcgen::SerialNumber::from(1u64));
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate, in PEM.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate binding `id`, signed by this CA.
    pub fn issue(&self, id: NodeId) -> Result<NodeCert, Error> {
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(rcgen_error)?;
        let uri = format!("{ID_URI_PREFIX}{}", id.0);
        params.subject_alt_names.push(rcgen::SanType::URI(rcgen::Ia5String::try_from(uri).map_err(rcgen_error)?));
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("conclave node {}", id.0));
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(rcgen::SerialNumber::from(id.0.wrapping_add(2)));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.cert, &self.key).map_err(rcgen_error)?;
        Ok(NodeCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// [`DevCa::issue`] as a ready [`TlsConfig`].
    pub fn tls(&self, id: NodeId) -> Result<TlsConfig, Error> {
        let node = self.issue(id)?;
        TlsConfig::from_pem(&self.ca_pem(), &node.cert_pem, &node.key_pem)
    }

    /// Writes `ca.pem`, `node-<id>.pem` and `node-<id>.key` into `dir` for each id.
    pub fn write_files(&self, dir: impl AsRef<Path>, ids: &[NodeId]) -> Result<(), Error> {
        let dir = dir.as_ref();
        let write = |name: String, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::TlsFile { path, why: e.to_string() })
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::TlsFile { path: dir.to_path_buf(), why: e.to_string() })?;
        write("ca.pem".into(), &self.ca_pem())?;
        for &id in ids {
            let node = self.issue(id)?;
            write(format!("node-{}.pem", id.0), &node.cert_pem)?;
            write(format!("node-{}.key", id.0), &node.key_pem)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_member() {
        let ca = DevCa::new("test").unwrap();
        let tls = ca.tls(NodeId(42)).unwrap();
        assert_eq!(tls.node_id(), Some(NodeId(42)));
        assert!(tls.quinn_configs().is_ok());
        // The CA's own certificate names no member; garbage is no certificate.
        let ca_der = first_cert(ca.ca_pem().as_bytes()).unwrap();
        assert_eq!(node_id_of(&ca_der), None);
        assert_eq!(node_id_of(&CertificateDer::from(vec![0x30, 0x82, 0xff])), None);
    }

    #[test]
    fn missing_or_bad_pem_is_a_readable_error() {
        let missing = TlsConfig::from_pem_files("/nonexistent/ca.pem", "/nonexistent/n.pem", "/nonexistent/n.key");
        assert!(matches!(missing, Err(Error::TlsFile { .. })), "{missing:?}");
        let ca = DevCa::new("test").unwrap();
        let node = ca.issue(NodeId(1)).unwrap();
        let message = TlsConfig::from_pem(&ca.ca_pem(), &node.cert_pem, "not a key").unwrap_err().to_string();
        assert!(message.contains("no private key"), "{message}");
        let message = TlsConfig::from_pem("", &node.cert_pem, &node.key_pem).unwrap_err().to_string();
        assert!(message.contains("no certificate"), "{message}");
    }
}
