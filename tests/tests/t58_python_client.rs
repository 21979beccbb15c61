//! The Python example client (`client/examples/python/`), written from
//! `proto/` alone, against a local secure cluster: a resumable upload cut
//! once, a range read and the SHA-256 of the whole object. Needs python3
//! with grpcio and grpcio-tools (`.ci/run` installs them); without them it
//! says SKIPPED and passes.

use std::path::PathBuf;
use std::time::Duration;

use tresor_node::config::DataTuning;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, pattern, sha256_hex, spec};

const MIB: usize = 1 << 20;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../client/examples/python/upload_and_verify.py")
}

/// Whether python3 can import what the example needs.
fn python_ready() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn the_python_example_uploads_resumably_reads_a_range_and_verifies() -> anyhow::Result<()> {
    if !python_ready() {
        println!(
            "SKIPPED: python3 with grpcio and grpcio-tools is needed \
             (pip install -r client/examples/python/requirements.txt)"
        );
        return Ok(());
    }
    let mut s = spec(6, 3);
    // Parts of one 4 MiB stripe, so a 20 MiB file has five.
    s.data = DataTuning {
        part_bytes: MIB as u64,
        ..Default::default()
    };
    let h = cluster!(data, spec = s)?;
    let token = h
        .admin(1)
        .await?
        .create_token(pb::CreateTokenRequest {
            principal: "admin".into(),
        })
        .await?
        .into_inner()
        .token;
    let dir = tempfile::tempdir()?;
    let data = pattern(20 * MIB + 12_345, 58);
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &data)?;
    let ca = h.ca_dir().expect("a secure cluster").join("ca.pem");
    let mut child = std::process::Command::new("python3")
        .arg(example())
        .arg(&file)
        .arg("footage/py/clip.mp4")
        .args(["--cut-after", &(6 * MIB).to_string()])
        .env("TRESOR_ENDPOINT", h.endpoint(2))
        .env("TRESOR_CA", &ca)
        .env("TRESOR_TOKEN", &token)
        .env("TRESOR_PY_STUBS", dir.path().join("stubs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("the Python example did not finish in 240 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output()?;
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("resumed from 4194304"), "{out}");
    assert!(out.contains("range [") && out.contains(") ok"), "{out}");
    assert!(
        out.contains(&format!("sha256 ok: {}", sha256_hex(&data))),
        "{out}"
    );
    let info = h.stat(3, "footage", "py/clip.mp4").await?;
    assert_eq!(info.sha256, sha256_hex(&data));
    assert_eq!(info.content_type, "video/mp4");
    Ok(())
}
