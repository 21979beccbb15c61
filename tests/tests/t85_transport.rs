//! Transport security: TLS on the one port, node certificates from the
//! cluster CA for internal RPCs, and only for current members.
//!
//! Every refusal is paired with a control call that differs only in the
//! credential under test and gets through, so that a refusal for any other
//! reason (a dead node, a bad request) cannot pass for a working check.

use std::time::{Duration, SystemTime};

use tonic::Code;
use tresor_client::{Credentials, Transport};
use tresor_node::tls::{Subject, Validity};
use tresor_proto::internal::v1 as ipb;
use tresor_proto::internal::v1::raft_client::RaftClient;
use tresor_proto::internal::v1::shards_client::ShardsClient;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, Harness, ADMIN_PRINCIPAL};

/// What an internal call ended in: refused before reaching the service (a
/// gRPC status of the guard, or a TLS/transport failure), or answered by
/// the service itself.
#[derive(Debug)]
enum Outcome {
    /// The service answered (a garbage request gets `InvalidArgument`).
    Served(Code),
    /// The guard or the transport refused: code and message.
    Refused(Code, String),
}

async fn channel(endpoint: &str, credentials: &Credentials) -> Result<Transport, String> {
    let channel = tresor_client::connect_with(endpoint, credentials)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(tresor_client::channel::transport(channel, credentials))
}

fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    match result {
        Ok(_) => Outcome::Served(Code::Ok),
        Err(s) if s.code() == Code::InvalidArgument => Outcome::Served(s.code()),
        Err(s) => Outcome::Refused(s.code(), s.message().to_string()),
    }
}

/// A Raft `Vote` with a payload that is not JSON: a member's certificate
/// gets it to the Raft service, which refuses it as malformed.
async fn raft_vote(endpoint: &str, credentials: &Credentials) -> Outcome {
    let channel = match channel(endpoint, credentials).await {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(Code::Unavailable, e),
    };
    let mut client = RaftClient::new(channel);
    outcome(
        client
            .vote(ipb::RaftPayload {
                json: b"not a vote".to_vec(),
                data: Vec::new(),
                target_incarnation: String::new(),
            })
            .await,
    )
}

/// A `ReadBlock` without a shard: the shard service refuses it as invalid.
async fn shards_read(endpoint: &str, credentials: &Credentials) -> Outcome {
    let channel = match channel(endpoint, credentials).await {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(Code::Unavailable, e),
    };
    let mut client = ShardsClient::new(channel);
    outcome(
        client
            .read_block(ipb::ReadBlockRequest {
                shard: None,
                block: 0,
                digest: Vec::new(),
            })
            .await,
    )
}

/// `DeleteObjectShards` of an object that does not exist: harmless when
/// served, and the guard must stop it before that for anyone but a member.
async fn shards_delete(endpoint: &str, credentials: &Credentials) -> Outcome {
    let channel = match channel(endpoint, credentials).await {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(Code::Unavailable, e),
    };
    let mut client = ShardsClient::new(channel);
    outcome(
        client
            .delete_object_shards(ipb::DeleteObjectShardsRequest {
                object_id: vec![0xAB; 16],
            })
            .await,
    )
}

/// `NodeInfo` on the admin service; `Ok` if the node answered it.
async fn node_info(endpoint: &str, credentials: &Credentials) -> Result<(), String> {
    let mut admin = tresor_client::admin_with(endpoint, credentials)
        .await
        .map_err(|e| format!("{e:#}"))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        admin.node_info(pb::NodeInfoRequest {}),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map(|_| ())
    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

fn assert_served(what: &str, got: Outcome) {
    assert!(
        matches!(got, Outcome::Served(Code::Ok | Code::InvalidArgument)),
        "{what}: control call should reach the service, got {got:?}"
    );
}

fn assert_refused(what: &str, got: Outcome, code: Code, message: &str) {
    match &got {
        Outcome::Refused(c, m) if *c == code && m.contains(message) => {}
        _ => panic!("{what}: expected {code:?} containing {message:?}, got {got:?}"),
    }
}

fn assert_refused_by_transport(what: &str, got: Outcome) {
    assert!(
        // Under load the client may see the refused handshake as a
        // cancelled call rather than an unavailable channel.
        matches!(
            got,
            Outcome::Refused(Code::Unavailable | Code::Unknown | Code::Cancelled, _)
        ),
        "{what}: expected the TLS handshake to fail, got {got:?}"
    );
}

#[tokio::test]
async fn client_certificates_and_tokens_cannot_call_internal_rpcs() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let endpoint = h.endpoint(1);
    let member = h.node_credentials(2)?;
    assert_served("raft as node 2", raft_vote(&endpoint, &member).await);
    assert_served("shards as node 2", shards_read(&endpoint, &member).await);
    assert_served("delete as node 2", shards_delete(&endpoint, &member).await);

    let client = h.client_credentials(ADMIN_PRINCIPAL)?;
    let denied = "member node's certificate";
    assert_refused(
        "raft as client admin",
        raft_vote(&endpoint, &client).await,
        Code::PermissionDenied,
        denied,
    );
    assert_refused(
        "shards as client admin",
        shards_read(&endpoint, &client).await,
        Code::PermissionDenied,
        denied,
    );
    assert_refused(
        "delete as client admin",
        shards_delete(&endpoint, &client).await,
        Code::PermissionDenied,
        denied,
    );

    // TLS without a certificate, with or without a token: not authenticated.
    let anonymous = h.credentials().clone().without_identity();
    assert_refused(
        "raft without certificate",
        raft_vote(&endpoint, &anonymous).await,
        Code::Unauthenticated,
        denied,
    );
    let token = anonymous.with_token("tok-never-valid-for-internal-rpcs")?;
    assert_refused(
        "shards with a token",
        shards_read(&endpoint, &token).await,
        Code::Unauthenticated,
        denied,
    );

    // A node certificate from the cluster CA, for a node that is no member.
    let ca_dir = h.ca_dir().expect("secure cluster");
    let stranger = tresor_node::tls::issue_pem(
        &ca_dir,
        &Subject::Node {
            id: 99,
            addrs: vec!["127.0.0.1".into()],
        },
        Validity::days(1),
    )?;
    let stranger = Credentials::new(
        std::fs::read(tresor_node::tls::ca_files(&ca_dir).cert).ok(),
        Some((stranger.cert_pem.into(), stranger.key_pem.into())),
        None,
    )?;
    assert_refused(
        "raft as non-member node 99",
        raft_vote(&endpoint, &stranger).await,
        Code::PermissionDenied,
        "node 99 is not a member",
    );
    Ok(())
}

#[tokio::test]
async fn node_of_another_ca_cannot_join_or_call_internal_rpcs() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let foreign_ca = tempfile::tempdir()?;
    let id = h.spawn_foreign_node("dc1", foreign_ca.path()).await?;
    let err = h
        .add_node(1, id)
        .await
        .expect_err("a node of another CA was added");
    assert!(
        err.message().contains("cannot reach the new node"),
        "unexpected refusal: {err:?}\n{}",
        h.logs()
    );
    let status = h
        .admin(1)
        .await?
        .status(pb::StatusRequest { local: false })
        .await?
        .into_inner();
    assert!(
        status.nodes.iter().all(|n| n.id != id),
        "node {id} is listed: {:?}",
        status.nodes
    );

    // What the foreign node presents (its own certificate), made to trust
    // the cluster's CA so that only its own certificate is the difference.
    let own = h.node_credentials(id)?;
    let cluster_ca = std::fs::read(tresor_node::tls::ca_files(&h.ca_dir().expect("ca")).cert)?;
    let foreign_node = tresor_node::tls::issue_pem(
        foreign_ca.path(),
        &Subject::Node {
            id: 2,
            addrs: vec!["127.0.0.1".into()],
        },
        Validity::days(1),
    )?;
    let impostor = Credentials::new(
        Some(cluster_ca.clone()),
        Some((foreign_node.cert_pem.into(), foreign_node.key_pem.into())),
        None,
    )?;
    let endpoint = h.endpoint(1);
    let member = h.node_credentials(2)?;
    assert_served("raft as node 2", raft_vote(&endpoint, &member).await);
    assert_refused_by_transport(
        "raft as node 2 of another CA",
        raft_vote(&endpoint, &impostor).await,
    );
    assert_served("shards as node 2", shards_read(&endpoint, &member).await);
    assert_refused_by_transport(
        "shards as node 2 of another CA",
        shards_read(&endpoint, &impostor).await,
    );
    // The foreign node's own credentials do not even accept the member's
    // server certificate.
    assert_refused_by_transport(
        "raft with the foreign node's credentials",
        raft_vote(&endpoint, &own).await,
    );
    Ok(())
}

#[tokio::test]
async fn plaintext_expired_and_foreign_certificates_are_refused() -> anyhow::Result<()> {
    let mut h = cluster!(1)?;
    h.form().await?;
    let endpoint = h.endpoint(1);
    let addr = h.addr(1);
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    node_info(&endpoint, h.credentials())
        .await
        .map_err(|e| anyhow::anyhow!("control call with the admin certificate: {e}"))?;
    node_info(&addr, h.credentials())
        .await
        .map_err(|e| anyhow::anyhow!("a bare host:port with a CA means https: {e}"))?;

    // (c) Plaintext to the TLS port.
    let plain = node_info(&format!("http://{addr}"), &Credentials::none()).await;
    assert!(plain.is_err(), "a plaintext call was answered");

    // (d) The admin principal, but an expired certificate.
    let now = SystemTime::now();
    let expired = h.client_credentials_valid(
        ADMIN_PRINCIPAL,
        Validity {
            not_before: now - Duration::from_secs(2 * 86_400),
            not_after: now - Duration::from_secs(86_400),
        },
    )?;
    let got = node_info(&endpoint, &expired).await;
    assert!(got.is_err(), "an expired certificate was accepted");

    // (d) The admin principal from another CA.
    let foreign_ca = tempfile::tempdir()?;
    tresor_node::tls::init_ca(foreign_ca.path())?;
    let foreign = tresor_node::tls::issue_pem(
        foreign_ca.path(),
        &Subject::Client {
            name: ADMIN_PRINCIPAL.into(),
        },
        Validity::days(1),
    )?;
    let cluster_ca = std::fs::read(tresor_node::tls::ca_files(&h.ca_dir().expect("ca")).cert)?;
    let foreign = Credentials::new(
        Some(cluster_ca),
        Some((foreign.cert_pem.into(), foreign.key_pem.into())),
        None,
    )?;
    let got = node_info(&endpoint, &foreign).await;
    assert!(got.is_err(), "a certificate of another CA was accepted");

    // The client refuses a server whose certificate is of another CA.
    let wrong_root = Credentials::new(
        Some(std::fs::read(
            tresor_node::tls::ca_files(foreign_ca.path()).cert,
        )?),
        None,
        None,
    )?;
    let got = node_info(&endpoint, &wrong_root).await;
    assert!(got.is_err(), "a server of another CA was trusted");
    Ok(())
}

#[tokio::test]
async fn cli_uses_credentials_from_the_environment() -> anyhow::Result<()> {
    const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");
    let mut h = cluster!(1)?;
    h.form().await?;
    let addr = h.addr(1);
    let args = ["--endpoint", addr.as_str(), "--output", "json", "status"];
    let (ok, out, err) = Harness::cli(BIN, &args, Duration::from_secs(30))?;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(status["nodes"][0]["id"], 1);

    // Without the CA the bare address means plaintext, which the node
    // does not speak.
    let (ok, _, err) = Harness::cli_env(
        BIN,
        &args,
        &[("TRESOR_CA", ""), ("TRESOR_CERT", ""), ("TRESOR_KEY", "")],
        Duration::from_secs(30),
    )?;
    assert!(!ok, "status over plaintext succeeded: {err}");

    // A certificate without its key is refused before connecting.
    let (ok, _, err) =
        Harness::cli_env(BIN, &args, &[("TRESOR_KEY", "")], Duration::from_secs(30))?;
    assert!(!ok);
    assert!(err.contains("needs its key"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_node_certificate_cannot_act_for_a_principal_on_object_calls() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 2, 1).await?;
    let node = h.node_credentials(2)?;
    let mut objects = h.objects_with(1, &node).await?;
    let list = |header: bool| {
        let mut request = tonic::Request::new(pb::ListRequest {
            bucket: "footage".into(),
            ..Default::default()
        });
        if header {
            request.metadata_mut().insert(
                tresor_node::api::auth::PRINCIPAL_HEADER,
                tonic::metadata::MetadataValue::from_static(ADMIN_PRINCIPAL),
            );
        }
        request
    };
    // Forwarding between nodes is for admin calls only: a member node's
    // certificate naming `admin` in the header still lists nothing.
    for header in [false, true] {
        let err = objects.list(list(header)).await.expect_err("a node lists");
        assert_eq!(err.code(), Code::PermissionDenied, "header {header}: {err}");
    }
    // The same call as the admin client works, so the refusal is the point.
    h.objects(1).await?.list(list(false)).await?;
    Ok(())
}

/// The services reflection lists through `channel`, in v1 and in v1alpha.
async fn reflected_services(channel: Transport) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    use tonic_reflection::pb::{v1, v1alpha};
    let v1_request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([v1_request]))
        .await?
        .into_inner();
    let mut listed_v1 = Vec::new();
    if let Some(answer) = answers.message().await? {
        if let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
            answer.message_response
        {
            listed_v1 = l.service.into_iter().map(|s| s.name).collect();
        }
    }
    let alpha_request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([alpha_request]))
        .await?
        .into_inner();
    let mut listed_alpha = Vec::new();
    if let Some(answer) = answers.message().await? {
        if let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
            answer.message_response
        {
            listed_alpha = l.service.into_iter().map(|s| s.name).collect();
        }
    }
    Ok((listed_v1, listed_alpha))
}

#[tokio::test]
async fn reflection_lists_the_public_services_in_both_versions_and_never_the_internal_ones(
) -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    // A caller with no credentials at all, and the administrator.
    let nobody = h.client_credentials("nobody")?.without_identity();
    for creds in [&nobody, h.credentials()] {
        let channel = channel(&h.endpoint(1), creds)
            .await
            .map_err(anyhow::Error::msg)?;
        let (v1, v1alpha) = reflected_services(channel).await?;
        // Each version lists itself; everything else is the same.
        let others = |names: &[String]| -> Vec<String> {
            let mut names: Vec<String> = names
                .iter()
                .filter(|s| !s.starts_with("grpc.reflection."))
                .cloned()
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            others(&v1),
            others(&v1alpha),
            "both versions list the same services"
        );
        assert!(v1alpha
            .iter()
            .any(|s| s == "grpc.reflection.v1alpha.ServerReflection"));
        for public in ["tresor.v1.Objects", "tresor.v1.Uploads", "tresor.v1.Admin"] {
            assert!(v1.iter().any(|s| s == public), "{public} not in {v1:?}");
        }
        assert!(
            v1.iter().all(|s| !s.starts_with("tresor.internal")),
            "internal services advertised: {v1:?}"
        );
    }
    Ok(())
}
