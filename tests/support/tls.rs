//! A certificate authority of a test's own, for SIP over TLS: it issues certificates for the
//! loopback peers.

use std::fs;
use std::path::PathBuf;

use crate::scratch;

/// A certificate authority of a test's own: it issues certificates for loopback peers, as
/// PEM files in a scratch directory.
pub struct TestCa {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA's certificate (PEM), to trust it.
    pub ca_file: PathBuf,
}

/// A certificate [`TestCa`] issued.
pub struct Issued {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Both in one file (what baresip reads).
    pub both_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let dir = scratch(&format!("ca-{name}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("callverify test CA {name}"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        let ca_file = dir.join("ca.pem");
        fs::write(&ca_file, cert.pem()).expect("write the CA certificate");
        TestCa {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            ca_file,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(std::string::ToString::to_string).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, stem);
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let issued = Issued {
            cert_file: self.dir.join(format!("{stem}.pem")),
            key_file: self.dir.join(format!("{stem}.key")),
            both_file: self.dir.join(format!("{stem}-both.pem")),
        };
        fs::write(&issued.cert_file, cert.pem()).expect("write the certificate");
        fs::write(&issued.key_file, key.serialize_pem()).expect("write the key");
        fs::write(&issued.both_file, cert.pem() + &key.serialize_pem()).expect("write both");
        issued
    }
}
