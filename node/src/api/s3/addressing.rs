//! How requests name their bucket, and the region the cluster answers as.
//! Path-style (`https://host:port/bucket/key`) always works; with
//! `s3_root_domain` set, so does virtual-hosted-style
//! (`https://bucket.<root>:port/key`), which tools use unless told
//! otherwise. Any other host name, and any IP address, is path-style.
//! Requests signed for another region than `[s3] region` are refused, as
//! AWS refuses them (`AuthorizationHeaderMalformed`).

use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Request, S3Result};

/// Virtual-hosted-style addressing under one root domain.
#[derive(Debug)]
pub(super) struct RootDomain {
    root: String,
}

impl RootDomain {
    pub(super) fn new(root: &str) -> Self {
        let root = root.trim_end_matches('.').to_ascii_lowercase();
        Self { root }
    }

    /// The bucket that `host` names: `<bucket>.<root>`, with or without
    /// a port.
    fn bucket<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => host,
        };
        let name = name.trim_end_matches('.');
        let cut = name.len().checked_sub(self.root.len() + 1)?;
        let (bucket, rest) = name.split_at(cut);
        let named = rest.strip_prefix('.')?.eq_ignore_ascii_case(&self.root);
        (named && !bucket.is_empty()).then_some(bucket)
    }
}

impl S3Host for RootDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket(host) {
            Some(bucket) => VirtualHost::new(self.root.as_str()).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

/// Refuses a request signed for a region other than `region`.
pub(super) fn check_region<T>(req: &S3Request<T>, region: &str) -> S3Result<()> {
    match &req.region {
        Some(signed) if signed.as_str() != region => Err(s3s::s3_error!(
            AuthorizationHeaderMalformed,
            "the request is signed for region {:?}; this cluster is {region:?}",
            signed.as_str()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_named_under_the_root_domain_only() {
        let root = RootDomain::new("s3.example.org.");
        assert_eq!(root.bucket("footage.s3.example.org"), Some("footage"));
        assert_eq!(root.bucket("footage.S3.Example.org:9000"), Some("footage"));
        assert_eq!(root.bucket("cam.v1.s3.example.org."), Some("cam.v1"));
        // Path-style: the root itself, other names, addresses.
        for host in [
            "s3.example.org",
            "s3.example.org:9000",
            ".s3.example.org",
            "footage.s3.example.org.evil",
            "footages3.example.org",
            "127.0.0.1:9000",
            "[::1]:9000",
            "node1.dc1:9000",
        ] {
            assert_eq!(root.bucket(host), None, "{host}");
        }
    }
}
