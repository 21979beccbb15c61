//! Certificates issued and identities read back; refusals.

use std::time::{Duration, SystemTime};

use rcgen::SanType;

use super::pki::addr_san;
use super::*;

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec()
}

#[test]
fn principal_names() {
    for ok in ["admin", "cam-01", "a", "0.b_c-d", &"x".repeat(64)] {
        validate_principal_name(ok).expect(ok);
    }
    for bad in [
        "",
        "Admin",
        "../../etc",
        "-x",
        ".x",
        "_x",
        "a b",
        "a/b",
        &"x".repeat(65),
    ] {
        assert!(validate_principal_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn identity_uris() {
    assert_eq!(
        PeerIdentity::from_uri("urn:tresor:node:7"),
        Some(PeerIdentity::Node(7))
    );
    assert_eq!(
        PeerIdentity::from_uri("urn:tresor:client:cam-1"),
        Some(PeerIdentity::Client("cam-1".into()))
    );
    for bad in [
        "urn:tresor:node:0",
        "urn:tresor:node:+7",
        "urn:tresor:node:",
        "urn:tresor:client:../x",
        "urn:other:node:1",
    ] {
        assert_eq!(PeerIdentity::from_uri(bad), None, "{bad}");
    }
}

#[test]
fn addresses_become_sans() {
    let ip = |s: &str| SanType::IpAddress(s.parse().expect("ip"));
    assert_eq!(addr_san("127.0.0.1:7001").expect("v4"), ip("127.0.0.1"));
    assert_eq!(addr_san("10.0.0.2").expect("v4"), ip("10.0.0.2"));
    assert_eq!(addr_san("[::1]:7001").expect("v6"), ip("::1"));
    assert_eq!(addr_san("::1").expect("v6"), ip("::1"));
    assert_eq!(
        addr_san("Node1.example:7001").expect("dns"),
        SanType::DnsName("node1.example".try_into().expect("ia5"))
    );
    assert_eq!(
        addr_san("*.s3.example.org").expect("wildcard"),
        SanType::DnsName("*.s3.example.org".try_into().expect("ia5"))
    );
    let bad_ones = ["", "a b", "host:port", "-x.example", "[::1", "x:99999"];
    let bad_wildcards = ["*.org", "*", "*.", "a.*.example", "**.example.org"];
    for bad in bad_ones.into_iter().chain(bad_wildcards) {
        assert!(addr_san(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ca_issues_node_and_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = init_ca(dir.path()).expect("init");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ca.key)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = init_ca(dir.path()).expect_err("second init");
    assert!(err.to_string().contains("refusing to replace"), "{err}");

    let node = Subject::Node {
        id: 3,
        addrs: vec!["127.0.0.1:7003".into(), "n3.example".into()],
    };
    let files = issue(dir.path(), dir.path(), &node, Validity::days(1)).expect("node");
    assert_eq!(files.cert, dir.path().join("node-3.pem"));
    let mode = std::fs::metadata(&files.key)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&files.cert).expect("read");
    assert_eq!(
        identity_of_certificate(&der(&pem)),
        Some(PeerIdentity::Node(3))
    );
    let node_der = der(&pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&node_der).expect("parse");
    let sans = format!("{:?}", parsed.subject_alternative_name());
    assert!(
        sans.contains("127.0.0.1") || sans.contains("[127, 0, 0, 1]"),
        "{sans}"
    );
    assert!(sans.contains("n3.example"), "{sans}");
    let eku = parsed
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth);

    let client = Subject::Client {
        name: "cam-1".into(),
    };
    let issued = issue_pem(dir.path(), &client, Validity::days(1)).expect("client");
    assert_eq!(
        identity_of_certificate(&der(&issued.cert_pem)),
        Some(PeerIdentity::Client("cam-1".into()))
    );
    let bad = Subject::Client {
        name: "../../etc".into(),
    };
    assert!(issue(dir.path(), dir.path(), &bad, Validity::days(1)).is_err());
    assert!(!dir.path().join("client-../../etc.pem").exists());
}

#[test]
fn expired_validity_is_allowed_for_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_ca(dir.path()).expect("init");
    let now = SystemTime::now();
    let past = Validity {
        not_before: now - Duration::from_secs(2 * 86_400),
        not_after: now - Duration::from_secs(86_400),
    };
    let client = Subject::Client { name: "old".into() };
    let issued = issue_pem(dir.path(), &client, past).expect("issue");
    let old_der = der(&issued.cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&old_der).expect("parse");
    assert!(!parsed.validity().is_valid());
}

#[test]
fn node_tls_checks_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = init_ca(dir.path()).expect("init");
    let node = Subject::Node {
        id: 2,
        addrs: vec!["127.0.0.1".into()],
    };
    let files = issue(dir.path(), dir.path(), &node, Validity::days(1)).expect("node");
    let security = SecurityConfig {
        insecure: false,
        ca: Some(ca.cert.clone()),
        cert: Some(files.cert.clone()),
        key: Some(files.key.clone()),
        ..Default::default()
    };
    NodeTls::load(&security, 2).expect("own cert");
    let err = NodeTls::load(&security, 5).expect_err("other node");
    assert!(err.to_string().contains("names node 2"), "{err}");
    let missing = SecurityConfig {
        key: Some(dir.path().join("nope.key")),
        ..security
    };
    let err = NodeTls::load(&missing, 2).expect_err("missing key");
    assert!(err.to_string().contains("nope.key"), "{err}");
}

#[test]
fn mismatched_ca_key_is_refused() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    init_ca(a.path()).expect("a");
    init_ca(b.path()).expect("b");
    std::fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).expect("copy");
    let client = Subject::Client { name: "x".into() };
    let err = issue_pem(a.path(), &client, Validity::days(1)).expect_err("mismatch");
    assert!(err.to_string().contains("does not belong"), "{err}");
}
