//! Running the command-line programs against a cluster, bounded in time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{process_pki, Harness};

impl Harness {
    /// Runs a command line program with `args` and returns (success,
    /// stdout, stderr). It gets the process CA and `admin` certificate in
    /// `TRESOR_CA`, `TRESOR_CERT` and `TRESOR_KEY`.
    pub fn cli(
        binary: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(bool, String, String)> {
        let (ok, out, err) = Self::cli_bytes(binary, args, timeout)?;
        Ok((ok, String::from_utf8_lossy(&out).into_owned(), err))
    }

    /// Like [`Harness::cli`], with stdout as raw bytes.
    pub fn cli_bytes(
        binary: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(bool, Vec<u8>, String)> {
        Self::cli_env(binary, args, &[], timeout)
    }

    /// Starts the CLI as [`Harness::cli_env`] does, without waiting for
    /// it: stdout and stderr are piped.
    pub fn cli_spawn(
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<std::process::Child> {
        let pki = process_pki()?;
        let mut command = std::process::Command::new(binary);
        command
            .env("TRESOR_CA", &pki.ca_cert)
            .env("TRESOR_CERT", &pki.admin.cert)
            .env("TRESOR_KEY", &pki.admin.key)
            .env_remove("TRESOR_TOKEN");
        for (key, value) in env {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start the CLI")
    }

    /// Like [`Harness::cli_bytes`], with `env` set on top of the
    /// credentials variables; a pair with an empty value removes that
    /// variable (for example `("TRESOR_CERT", "")` to use only a token).
    pub fn cli_env(
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<(bool, Vec<u8>, String)> {
        let mut child = Self::cli_spawn(binary, args, env)?;
        // Read both pipes on threads so a chatty child cannot block on a
        // full pipe while we wait for it.
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{binary} {args:?} did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        Ok((
            status.success(),
            out,
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }
}
