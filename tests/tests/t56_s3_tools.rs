//! The S3 tools operators use, as they use them: the environment file of a
//! dev cluster sourced in a shell, then `aws s3 cp` of a 100 MiB file (a
//! multipart upload, parts in parallel) and back, `aws s3 ls`, and rclone
//! (`copy`, `check`, `ls`) through the `tresor:` remote that environment
//! configures. Needs the AWS CLI and rclone from
//! `tests/python/requirements.txt` (`.ci/run` installs them); without them
//! the test says SKIPPED.

use std::path::Path;
use std::time::Duration;

use tresor_tests::s3::{python_has, skipped, tools_path};
use tresor_tests::{cluster, pattern, sha256_hex, spec, Harness};

const MIB: usize = 1 << 20;

/// Runs `script` in bash after sourcing the cluster's env file; its
/// standard output, or an error with both outputs.
async fn shell(env: &Path, dir: &Path, script: &str) -> anyhow::Result<String> {
    let line = format!("set -euo pipefail; source '{}'; {script}", env.display());
    let run = tokio::process::Command::new("bash")
        .args(["-c", &line])
        .current_dir(dir)
        .env("PATH", tools_path())
        // Nothing of the user's own AWS or rclone setup.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RCLONE_CONFIG", "/dev/null")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .map_err(|_| anyhow::anyhow!("{script}: no end in 300 s"))??;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    anyhow::ensure!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(stdout)
}

fn tools_ready() -> bool {
    let path = tools_path();
    let runs = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .env("PATH", &path)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    python_has("awscli") && runs("aws") && runs("rclone")
}

#[tokio::test]
async fn aws_cli_and_rclone_work_from_the_dev_environment() -> anyhow::Result<()> {
    if skipped(tools_ready(), "the AWS CLI and rclone") {
        return Ok(());
    }
    let mut s = spec(6, 3);
    s.s3 = true;
    let mut h: Harness = cluster!(data, spec = s)?;
    let access = h.local_cluster().create_admin_access().await?;
    let env = h.local_cluster().write_env(&access)?;
    let dir = tempfile::tempdir()?;
    let work = dir.path();

    // aws s3 cp: 100 MiB, so a multipart upload of 8 MiB parts.
    let big = pattern(100 * MIB + 12_345, 61);
    std::fs::write(work.join("big.mp4"), &big)?;
    shell(
        &env,
        work,
        "aws s3 cp --only-show-errors big.mp4 s3://footage/unit-17/big.mp4",
    )
    .await?;
    let listed = shell(&env, work, "aws s3 ls s3://footage/unit-17/").await?;
    assert!(
        listed.contains(&format!("{} big.mp4", big.len())),
        "{listed}"
    );
    shell(
        &env,
        work,
        "aws s3 cp --only-show-errors s3://footage/unit-17/big.mp4 back.mp4",
    )
    .await?;
    let back = std::fs::read(work.join("back.mp4"))?;
    assert!(back == big, "aws s3 cp brought other bytes back");
    // The same object for the native API: one object, the whole SHA-256.
    let (info, bytes) = h.get(2, "footage", "unit-17/big.mp4", None, None).await?;
    assert_eq!(info.sha256, sha256_hex(&big));
    assert_eq!(bytes.len(), big.len());
    // A taken key: S3's answer to a conditional write, which the CLI reports.
    let again = shell(
        &env,
        work,
        "aws s3 cp --only-show-errors big.mp4 s3://footage/unit-17/big.mp4",
    )
    .await
    .expect_err("objects are immutable");
    assert!(
        again.to_string().contains("PreconditionFailed"),
        "{again:#}"
    );

    // rclone through the environment's `tresor:` remote.
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("day-1"))?;
    std::fs::write(tree.join("day-1/a.mp4"), pattern(3 * MIB + 1, 62))?;
    std::fs::write(tree.join("day-1/b.mp4"), pattern(9 * MIB + 7, 63))?;
    std::fs::write(tree.join("notes.txt"), b"chain of custody: unit 17")?;
    shell(&env, work, "rclone copy tree tresor:footage/rc").await?;
    shell(&env, work, "rclone check tree tresor:footage/rc").await?;
    let listed = shell(&env, work, "rclone ls tresor:footage/rc").await?;
    let mut lines: Vec<String> = listed
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    let mut want = vec![
        format!("{} day-1/a.mp4", 3 * MIB + 1),
        format!("{} day-1/b.mp4", 9 * MIB + 7),
        "25 notes.txt".to_string(),
    ];
    want.sort();
    assert_eq!(lines, want);
    // A changed local file is a difference rclone check reports.
    std::fs::write(tree.join("notes.txt"), b"chain of custody: unit 18")?;
    let differs = shell(&env, work, "rclone check tree tresor:footage/rc").await;
    assert!(differs.is_err(), "rclone check missed a changed file");
    Ok(())
}
