//! One node process of a local cluster: how it is started, stopped and
//! killed, and the free ports it listens on.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::NodeConfig;

/// How to start a node process: a program and the arguments that make it
/// serve (`--config FILE` is appended).
#[derive(Debug, Clone)]
pub struct NodeLauncher {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before `--config FILE`.
    pub args: Vec<OsString>,
}

impl NodeLauncher {
    /// This very executable, run as `<exe> serve`.
    pub fn current_exe_serve() -> anyhow::Result<Self> {
        Ok(Self {
            program: std::env::current_exe().context("cannot find own executable")?,
            args: vec!["serve".into()],
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released), never one this
/// process was given before: the OS may hand a just-released port out
/// again, and two nodes defined one after the other must not share one.
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no fresh free port after 100 tries"))
}

/// One node process of a local cluster.
pub struct LocalNode {
    /// Its config, as written to `config_path`.
    pub config: NodeConfig,
    /// Where the config file is.
    pub config_path: PathBuf,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
    /// Extra environment of the next start (e.g. crash points to arm).
    pub env: Vec<(OsString, OsString)>,
    pub(super) child: Option<Child>,
}

impl LocalNode {
    /// The node's gRPC endpoint URL (`https` unless the node is insecure).
    pub fn endpoint(&self) -> String {
        let scheme = if self.config.security.insecure {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.config.listen)
    }

    /// The S3 endpoint URL of this node (`None`: it serves no S3 port).
    pub fn s3_endpoint(&self) -> Option<String> {
        let scheme = if self.config.security.insecure {
            "http"
        } else {
            "https"
        };
        self.config
            .s3_listen
            .map(|addr| format!("{scheme}://{addr}"))
    }

    /// Changes the config (for the next start) and rewrites its file.
    pub fn update_config(&mut self, change: impl FnOnce(&mut NodeConfig)) -> anyhow::Result<()> {
        change(&mut self.config);
        self.config.validate()?;
        std::fs::write(&self.config_path, toml::to_string(&self.config)?)
            .with_context(|| format!("cannot write {}", self.config_path.display()))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process (again, on the same data dir, if it ran before).
    pub fn spawn(&mut self, launcher: &NodeLauncher) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("node {} is already running", self.config.node_id);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let child = Command::new(&launcher.program)
            .args(&launcher.args)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--watch-stdin")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", launcher.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            node_id = self.config.node_id,
            "node did not stop in time; killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}
