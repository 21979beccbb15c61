//! One CA per test process, and client credentials issued by a cluster's CA.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use tresor_client::Credentials;
use tresor_node::tls::{CertFiles, Subject, Validity};

use crate::{Harness, ADMIN_PRINCIPAL};

/// The CA of this test process and the `admin` credentials issued by it.
pub struct ProcessPki {
    /// Directory of the CA (`ca.pem`, `ca.key`) and of issued files.
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The `admin` client certificate and key.
    pub admin: CertFiles,
    /// CA plus `admin` certificate.
    pub credentials: Credentials,
}

/// The CA of this test process, made on first use in a temporary directory
/// that lives as long as the process; also makes its `admin` credentials
/// the process-wide default of `tresor_client`.
pub fn process_pki() -> anyhow::Result<&'static ProcessPki> {
    static PKI: OnceLock<Result<ProcessPki, String>> = OnceLock::new();
    PKI.get_or_init(|| make_process_pki().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("cannot set up the test CA: {e}"))
}

fn make_process_pki() -> anyhow::Result<ProcessPki> {
    let dir = tempfile::Builder::new()
        .prefix("tresor-test-ca-")
        .tempdir()?
        .keep();
    let ca_cert = tresor_node::devcluster::ensure_ca(&dir)?;
    let admin = tresor_node::tls::issue(
        &dir,
        &dir.join("admin"),
        &Subject::Client {
            name: ADMIN_PRINCIPAL.into(),
        },
        Validity::days(30),
    )?;
    let credentials =
        Credentials::from_files(Some(&ca_cert), Some(&admin.cert), Some(&admin.key), None)?;
    tresor_client::set_default_credentials(credentials.clone());
    Ok(ProcessPki {
        dir,
        ca_cert,
        admin,
        credentials,
    })
}

/// Directory of this test process's CA.
pub fn process_ca_dir() -> anyhow::Result<PathBuf> {
    Ok(process_pki()?.dir.clone())
}

impl Harness {
    /// Credentials of client principal `name`: a certificate issued now by
    /// this cluster's CA, valid for a day.
    pub fn client_credentials(&self, name: &str) -> anyhow::Result<Credentials> {
        self.client_credentials_valid(name, Validity::days(1))
    }

    /// Like [`Harness::client_credentials`], valid for `validity` (which may
    /// lie in the past, for an expired certificate).
    pub fn client_credentials_valid(
        &self,
        name: &str,
        validity: Validity,
    ) -> anyhow::Result<Credentials> {
        let ca_dir = self.ca_dir().context("an insecure cluster has no CA")?;
        let issued =
            tresor_node::tls::issue_pem(&ca_dir, &Subject::Client { name: name.into() }, validity)?;
        let ca = std::fs::read(tresor_node::tls::ca_files(&ca_dir).cert)?;
        Ok(Credentials::new(
            Some(ca),
            Some((issued.cert_pem.into_bytes(), issued.key_pem.into_bytes())),
            None,
        )?)
    }

    /// Certificate and key files of client principal `name`, issued now by
    /// this cluster's CA into a directory of their own (for the CLIs'
    /// `TRESOR_CERT` and `TRESOR_KEY`).
    pub fn client_cert_files(&self, name: &str) -> anyhow::Result<CertFiles> {
        let ca_dir = self.ca_dir().context("an insecure cluster has no CA")?;
        let out = tempfile::Builder::new()
            .prefix("client-")
            .tempdir_in(self.cluster.dir())?
            .keep();
        Ok(tresor_node::tls::issue(
            &ca_dir,
            &out,
            &Subject::Client { name: name.into() },
            Validity::days(1),
        )?)
    }
}
