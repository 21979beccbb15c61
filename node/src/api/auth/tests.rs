//! Every role against every action; tokens.

use super::*;
use std::collections::BTreeSet;

use crate::meta::{Grant, Role};

fn grant(role: Role, bucket: Option<&str>) -> Grant {
    Grant {
        principal: "p".into(),
        role,
        bucket: bucket.map(Into::into),
    }
}

/// The role table, spelled out: which actions each role allows where
/// its grant applies.
fn expected(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Ingest => matches!(action, Put),
        Role::Read => matches!(action, Get | Stat | List | ListBuckets | ListRetention),
        Role::Audit => matches!(
            action,
            AuditLog
                | AuditVerify
                | ListHolds
                | ListRetention
                | ListReceipts
                | GetReceipt
                | ExportCustody
                | AuditCheckpoint
        ),
        Role::Custodian => matches!(
            action,
            PlaceHold
                | ReleaseHold
                | ListHolds
                | ExtendRetention
                | ListRetention
                | ListReceipts
                | GetReceipt
                | ExportCustody
                | AuditCheckpoint
        ),
    }
}

/// Actions that name a bucket when they are checked.
fn names_bucket(action: Action) -> bool {
    use Action::*;
    matches!(
        action,
        Put | Get
            | Stat
            | List
            | Delete
            | AuditLog
            | PlaceHold
            | ReleaseHold
            | ExtendRetention
            | ListHolds
            | ListReceipts
            | GetReceipt
            | ExportCustody
    )
}

#[test]
fn every_role_and_every_action() {
    let ingest_only = [Action::Put];
    for action in Action::ALL {
        assert_eq!(
            role_allows(Role::Ingest, action),
            ingest_only.contains(&action)
        );
        for role in Role::ALL {
            let want = expected(role, action);
            assert_eq!(role_allows(role, action), want, "{role} × {action}");
            // Cluster-wide grant: applies to every bucket and to
            // cluster-wide calls.
            let wide = [grant(role, None)];
            assert_eq!(allows(&wide, action, None), want, "{role} × {action}");
            assert_eq!(
                allows(&wide, action, Some("cams")),
                want,
                "{role} × {action} on cams"
            );
            // Grant on one bucket: that bucket's calls only.
            let scoped = [grant(role, Some("cams"))];
            if names_bucket(action) {
                assert_eq!(allows(&scoped, action, Some("cams")), want);
                assert!(!allows(&scoped, action, Some("other")), "{role} × {action}");
            }
            let cluster_wide =
                matches!(action, Action::ListBuckets | Action::ListRetention) && want;
            assert_eq!(
                allows(&scoped, action, None),
                cluster_wide,
                "scoped {role} × {action} without a bucket"
            );
        }
        assert!(!allows(&[], action, None), "no grants × {action}");
        assert!(!allows(&[], action, Some("cams")), "no grants × {action}");
    }
    // Ingest may neither list, read, stat nor delete.
    let ingest = [grant(Role::Ingest, None)];
    for action in [Action::List, Action::Get, Action::Stat, Action::Delete] {
        assert!(!allows(&ingest, action, Some("cams")));
    }
    assert!(!allows(&ingest, Action::ListBuckets, None));
    // Roles add up.
    let both = [grant(Role::Ingest, Some("a")), grant(Role::Read, Some("b"))];
    assert!(allows(&both, Action::Put, Some("a")));
    assert!(!allows(&both, Action::Put, Some("b")));
    assert!(allows(&both, Action::Get, Some("b")));
    assert!(!allows(&both, Action::Get, Some("a")));
}

#[test]
fn action_names_are_distinct() {
    let names: BTreeSet<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(names.len(), Action::ALL.len());
}

#[test]
fn bucket_listing_follows_the_grants() {
    assert_eq!(visible_buckets(&[grant(Role::Read, None)]), None);
    assert_eq!(visible_buckets(&[grant(Role::Admin, None)]), None);
    assert_eq!(
        visible_buckets(&[grant(Role::Read, Some("a")), grant(Role::Ingest, None)]),
        None
    );
    let some = visible_buckets(&[
        grant(Role::Read, Some("a")),
        grant(Role::Admin, Some("b")),
        grant(Role::Ingest, Some("c")),
        grant(Role::Audit, Some("a")),
    ]);
    let names = ["a", "b", "c"].map(String::from);
    assert_eq!(some, Some(names.into_iter().collect()));
    assert_eq!(visible_buckets(&[]), Some(BTreeSet::new()));
}

#[test]
fn tokens_hash_parse_and_match() {
    let (token, text) = new_token("alice");
    assert_eq!(token.principal, "alice");
    assert_eq!(token.id.len(), 16);
    assert_eq!(token.secret_sha256.len(), 64);
    assert!(!text.contains(&token.secret_sha256));
    let (id, secret) = parse_token(&text).expect("parses");
    assert_eq!(id, token.id);
    assert_eq!(secret.len(), 32);
    assert!(token_matches(&token, &secret));
    assert_eq!(token.secret_sha256, secret_sha256(&secret));
    // Another secret does not match.
    let mut wrong = secret.clone();
    wrong[0] ^= 1;
    assert!(!token_matches(&token, &wrong));
    // Two tokens differ.
    let (other, other_text) = new_token("alice");
    assert_ne!(other.id, token.id);
    assert_ne!(other_text, text);
    // Malformed tokens are refused.
    let bad = [
        String::new(),
        "tresor_".into(),
        text.replacen("tresor_", "tresor-", 1),
        text.to_uppercase(),
        format!("{text}0"),
        text[..text.len() - 1].to_string(),
        format!("tresor_{}_{}", "0".repeat(15), "0".repeat(64)),
        format!("tresor_{}_{}", "g".repeat(16), "0".repeat(64)),
        format!("tresor_{}_{}_", "0".repeat(16), "0".repeat(64)),
    ];
    for b in bad {
        assert!(parse_token(&b).is_none(), "{b:?}");
    }
}
