//! What the S3 tests share: keys of principals, and the Python tools they
//! drive (boto3, the AWS CLI, rclone: `tests/python/requirements.txt`).

use crate::Harness;
use tresor_proto::v1 as pb;

/// A new S3 access key of `principal`: (id, secret).
pub async fn s3_key(h: &Harness, principal: &str) -> anyhow::Result<(String, String)> {
    let key = h
        .admin(1)
        .await?
        .create_s3_key(pb::CreateS3KeyRequest {
            principal: principal.into(),
        })
        .await?
        .into_inner();
    Ok((key.access_key_id, key.secret_access_key))
}

/// Whether python3 can import `module`.
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `PATH` with the directory where pip puts python3's scripts (`aws`,
/// `rclone`) first, wherever that is.
pub fn tools_path() -> String {
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{scripts}:{path}")
}

/// Whether a test must be skipped, `ready` being false: it then says so,
/// naming what it `needs`.
pub fn skipped(ready: bool, needs: &str) -> bool {
    if !ready {
        println!("SKIPPED: {needs} is needed (pip install -r tests/python/requirements.txt)");
    }
    !ready
}
