//! The audit log: every call of a scripted session is on record with its
//! outcome, the chain verifies, and changing one stored entry is caught at
//! that entry.

use std::time::Duration;

use tresor_proto::v1 as pb;
use tresor_tests::{cluster, pattern, sha256_hex, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");

async fn log(h: &Harness, via: u64) -> anyhow::Result<Vec<pb::AuditEntry>> {
    h.audit_log(via, 10_000).await
}

#[tokio::test]
async fn session_is_on_record_and_tampering_is_caught() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(2, "footage", 2, 1).await?;
    let data = pattern(50_000, 1);
    h.put(2, "footage", "cam/1", &data).await?;
    h.get(3, "footage", "cam/1", None, None).await?;
    h.stat(1, "footage", "cam/1").await?;
    let missing = h
        .get(1, "footage", "cam/none", None, None)
        .await
        .expect_err("not found");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    h.objects(1)
        .await?
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: "cam/1".into(),
        })
        .await?;

    let entries = log(&h, 3).await?;
    let find = |action: &str, key: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e.action == action && e.key == key && e.outcome == outcome)
            .cloned()
    };
    let put = find("put", "cam/1", "ok").expect("put on record");
    assert_eq!(put.object_sha256, sha256_hex(&data));
    assert_eq!(put.node, 2);
    // The harness acts as the `admin` principal (client certificate); a
    // cluster run with `insecure = true` authenticates nobody and records
    // the caller's address instead.
    let insecure = tresor_node::config::NodeConfig::load(&h.config_path(1))?
        .security
        .insecure;
    let principal = if insecure {
        "anonymous@127.0.0.1"
    } else {
        "admin"
    };
    for e in &entries {
        assert_eq!(e.principal, principal, "{e:?}");
    }
    let get = find("get", "cam/1", "ok").expect("get on record");
    assert_eq!(get.node, 3);
    assert_eq!(get.object_sha256, sha256_hex(&data));
    assert!(find("stat", "cam/1", "ok").is_some());
    assert!(
        find("get", "cam/none", "not_found").is_some(),
        "refusals are on record"
    );
    assert!(find("delete", "cam/1", "ok").is_some());
    assert!(entries
        .iter()
        .any(|e| e.action == "bucket create" && e.bucket == "footage" && e.outcome == "ok"));
    // The read's entry precedes the delete's: entries are in call order.
    assert!(get.seq < find("delete", "cam/1", "ok").map(|e| e.seq).unwrap_or(0));
    // Sequence numbers have no gaps and each entry names its predecessor.
    for pair in entries.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }

    for id in h.ids() {
        let v = h.audit_verify(id).await?;
        assert!(v.intact, "node {id}: {}", v.reason);
    }

    // Change one entry in a stopped node's store (the outcome of the put).
    let victim = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    tresor_tests::wait_for(
        "victim has the whole log",
        tresor_tests::SETTLE_TIMEOUT,
        || async {
            Ok((h.audit_verify(victim).await?.entries >= entries.len() as u64).then_some(()))
        },
    )
    .await?;
    h.stop(victim).await;
    {
        let db = tresor_node::meta::database::open(&h.data_dir(victim).join("meta"), 1 << 20)?;
        let tree = tresor_node::raft::state_machine::state_tree(&db)?;
        let mut key = b"audit/".to_vec();
        key.extend_from_slice(&put.seq.to_be_bytes());
        let value = tree.get(&key)?.expect("entry stored");
        // Decoded and re-encoded the way the node stores it: a valid value
        // whose content was changed, not garbage.
        let mut entry: tresor_node::meta::audit::AuditEntry =
            tresor_node::meta::codec::decode(&value)?;
        entry.record.outcome = "permission_denied".into();
        tree.insert(key, tresor_node::meta::codec::encode(&entry))?;
        db.flush()?;
    }
    h.restart(victim).await?;
    let v = h.audit_verify(victim).await?;
    assert!(!v.intact);
    assert_eq!(v.broken_seq, Some(put.seq), "{}", v.reason);
    assert!(
        h.audit_verify(leader).await?.intact,
        "the other copies are untouched"
    );

    // The CLI says the same, and exits non-zero.
    let (ok, out, err) = Harness::cli(
        BIN,
        &["--endpoint", &h.endpoint(victim), "audit", "verify"],
        Duration::from_secs(30),
    )?;
    assert!(!ok, "{out}{err}");
    assert!(out.contains(&format!("at entry {}", put.seq)), "{out}");
    let (ok, out, err) = Harness::cli(
        BIN,
        &[
            "--endpoint",
            &h.endpoint(leader),
            "--output",
            "json",
            "audit",
            "verify",
        ],
        Duration::from_secs(30),
    )?;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["intact"], true);
    assert_eq!(v["head_hash"].as_str().map(str::len), Some(64));
    let (ok, out, err) = Harness::cli(
        BIN,
        &[
            "--endpoint",
            &h.endpoint(leader),
            "--output",
            "json",
            "audit",
            "log",
            "--key",
            "cam/1",
        ],
        Duration::from_secs(30),
    )?;
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    let actions: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(actions, vec!["put", "get", "stat", "delete"]);
    Ok(())
}
