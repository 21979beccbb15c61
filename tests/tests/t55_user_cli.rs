//! The `tresor` command line against a live cluster: every command, JSON
//! shapes, and failures that exit non-zero with a message.

use std::time::Duration;

use tresor_node::config::DataTuning;
use tresor_tests::{cluster, pattern, sha256_hex, spec, Harness};

const CLI: &str = env!("CARGO_BIN_EXE_tresor-test-cli");

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn put_get_ls_stat_verify_rm() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    s.data = DataTuning {
        shard_bytes: 4096,
        segment_bytes: 1 << 20,
        ..Default::default()
    };
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    // Failover: the first endpoint is dead.
    let dead = format!("http://127.0.0.1:{}", tresor_node::devcluster::free_port()?);
    let endpoints = format!("{dead},{},{}", h.endpoint(2), h.endpoint(3));
    let dir = tempfile::tempdir()?;
    let data = pattern(300_000, 4);
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &data)?;
    let file = file.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all = vec!["--endpoint", endpoints.as_str(), "--output", "json"];
        all.extend_from_slice(args);
        Harness::cli(CLI, &all, Duration::from_secs(60))
    };

    let (ok, out, err) = run(&["put", "footage/cams/unit-1/clip.mp4", &file])?;
    assert!(ok, "{err}");
    let put = json(&out);
    assert_eq!(put["bucket"], "footage");
    assert_eq!(put["key"], "cams/unit-1/clip.mp4");
    assert_eq!(put["size"], 300_000);
    assert_eq!(put["sha256"], sha256_hex(&data));

    let target = dir.path().join("back.mp4");
    let target_s = target.to_string_lossy().into_owned();
    let (ok, _, err) = run(&["get", "footage/cams/unit-1/clip.mp4", "-o", &target_s])?;
    assert!(ok, "{err}");
    assert!(std::fs::read(&target)? == data);

    // Inclusive ranges to stdout.
    let (ok, out, err) = Harness::cli_bytes(
        CLI,
        &[
            "--endpoint",
            &endpoints,
            "get",
            "footage/cams/unit-1/clip.mp4",
            "--range",
            "1000-1999",
        ],
        Duration::from_secs(60),
    )?;
    assert!(ok, "{err}");
    assert_eq!(out, &data[1000..2000]);
    let ranged = dir.path().join("tail.bin");
    let ranged_s = ranged.to_string_lossy().into_owned();
    let (ok, _, err) = run(&[
        "get",
        "footage/cams/unit-1/clip.mp4",
        "--range",
        "299990-",
        "-o",
        &ranged_s,
    ])?;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&ranged)?, &data[299_990..]);

    let (ok, out, err) = run(&["ls", "footage/cams/"])?;
    assert!(ok, "{err}");
    let listed = json(&out);
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1));
    assert_eq!(listed[0]["key"], "cams/unit-1/clip.mp4");
    assert_eq!(listed[0]["size"], 300_000);
    assert_eq!(listed[0]["sha256"], sha256_hex(&data));

    let (ok, out, err) = run(&["stat", "footage/cams/unit-1/clip.mp4"])?;
    assert!(ok, "{err}");
    let stat = json(&out);
    for key in [
        "bucket", "key", "size", "sha256", "data", "parity", "stripes", "created",
    ] {
        assert!(!stat[key].is_null(), "stat lacks {key}: {stat}");
    }
    assert_eq!(stat["data"], 4);
    assert_eq!(stat["parity"], 2);

    let (ok, _, err) = run(&["verify", "footage/cams/unit-1/clip.mp4"])?;
    assert!(ok, "{err}");

    // Failures: exit non-zero with a message naming the problem.
    let (ok, _, err) = run(&["put", "footage/cams/unit-1/clip.mp4", &file])?;
    assert!(!ok);
    assert!(err.to_lowercase().contains("exists"), "{err}");
    let (ok, _, err) = run(&["put", "no-such-bucket/x", &file])?;
    assert!(!ok);
    assert!(err.to_lowercase().contains("bucket"), "{err}");
    let (ok, _, err) = run(&["get", "footage-without-key", "-o", &target_s])?;
    assert!(!ok);
    assert!(err.contains("BUCKET/KEY"), "{err}");
    let (ok, _, err) = run(&["get", "footage/cams/unit-1/clip.mp4", "--range", "9-3"])?;
    assert!(!ok, "an inverted range must fail: {err}");

    let (ok, _, err) = run(&["rm", "footage/cams/unit-1/clip.mp4"])?;
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["stat", "footage/cams/unit-1/clip.mp4"])?;
    assert!(!ok);
    assert!(err.to_lowercase().contains("not"), "{err}");
    let (ok, _, _) = run(&["verify", "footage/cams/unit-1/clip.mp4"])?;
    assert!(!ok);
    Ok(())
}
