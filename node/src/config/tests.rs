use super::*;

const MINIMAL: &str = r#"
node_id = 1
zone = "dc1"
listen = "127.0.0.1:7001"
data_dir = "/var/lib/tresor/1"
[security]
ca = "/etc/tresor/ca.pem"
cert = "/etc/tresor/node.pem"
key = "/etc/tresor/node.key"
master_key_file = "/etc/tresor/master.keys"
signer_cert = "/etc/tresor/signer.pem"
signer_key = "/etc/tresor/signer.key"
"#;

fn field_of(err: ConfigError) -> String {
    err.to_string()
}

#[test]
fn minimal_config_parses_with_defaults() {
    let c = NodeConfig::parse(MINIMAL).expect("valid");
    assert_eq!(c.node_id, 1);
    assert_eq!(c.advertised_addr(), "127.0.0.1:7001");
    assert_eq!(c.http_listen, None);
    assert_eq!(c.raft, RaftTuning::default());
}

#[test]
fn every_documented_key_is_accepted() {
    let text = format!(
        "advertise = \"n1.dc1:7001\"\nhttp_listen = \"127.0.0.1:9001\"\ncapacity = 1000\n{MINIMAL}[raft]\nheartbeat_ms = 50\n"
    );
    let c = NodeConfig::parse(&text).expect("valid");
    assert_eq!(c.advertised_addr(), "n1.dc1:7001");
    assert_eq!(c.raft.heartbeat_ms, 50);
}

#[test]
fn insecure_needs_no_security_files() {
    let text = "node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\ninsecure = true\n";
    let c = NodeConfig::parse(text).expect("valid");
    assert!(c.security.insecure);
    assert_eq!(c.security.master_key_file, None);
}

/// Each broken config must be refused with a message naming the field.
#[test]
fn bad_configs_name_their_field() {
    let cases: &[(&str, &str)] = &[
        ("zone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
        ("node_id = 1\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
        ("node_id = 1\nzone = \"dc1\"\ndata_dir = \"/d\"", "listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"", "data_dir"),
        ("node_id = 0\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
        ("node_id = -3\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
        ("node_id = 1\nzone = \"\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
        ("node_id = 1\nzone = \"d c\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"nowhere\"\ndata_dir = \"/d\"", "listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/d\"", "listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"\"", "data_dir"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nadvertise = \"x\"", "advertise"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nhttp_listen = \"127.0.0.1:7001\"", "http_listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\ncapacity = 0", "capacity"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nzones = \"x\"", "zones"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[raft]\nheartbeat_ms = 5000", "raft.election_timeout_min_ms"),
        ("node_id = = 1", "node_id"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "security.ca"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"", "security.master_key_file"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\nmaster_key_file = \"m\"", "security.signer_cert"),
    ];
    for (text, field) in cases {
        let err = NodeConfig::parse(text).expect_err(text);
        let msg = field_of(err);
        assert!(
            msg.contains(field),
            "{text:?}: message {msg:?} does not name {field}"
        );
    }
}
