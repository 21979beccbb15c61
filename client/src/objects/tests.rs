//! Ranges, digests, retry decisions, chunked uploads, partial files.

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Code;
use tresor_proto::v1::{put_request, PutRequest};

use super::download::PartialFile;
use super::upload::{normalize_sha256, send_body};
use super::*;

#[test]
fn no_range_is_the_whole_object() {
    assert_eq!(range_to_offset_length(None).ok(), Some((None, None)));
}

#[test]
fn inclusive_range_becomes_offset_and_length() {
    assert_eq!(
        range_to_offset_length(Some((0, Some(99)))).ok(),
        Some((Some(0), Some(100)))
    );
    assert_eq!(
        range_to_offset_length(Some((5, Some(5)))).ok(),
        Some((Some(5), Some(1)))
    );
    assert_eq!(
        range_to_offset_length(Some((100, None))).ok(),
        Some((Some(100), None))
    );
    assert_eq!(
        range_to_offset_length(Some((0, Some(u64::MAX)))).ok(),
        Some((Some(0), None))
    );
    assert_eq!(
        range_to_offset_length(Some((1, Some(u64::MAX)))).ok(),
        Some((Some(1), Some(u64::MAX)))
    );
}

#[test]
fn backwards_range_is_refused() {
    assert!(matches!(
        range_to_offset_length(Some((5, Some(4)))),
        Err(ObjectError::InvalidArgument(_))
    ));
}

#[test]
fn sha256_is_normalized_or_refused() {
    let upper = "AB".repeat(32);
    assert_eq!(normalize_sha256(&upper).ok(), Some("ab".repeat(32)));
    assert!(normalize_sha256("abc").is_err());
    assert!(normalize_sha256(&"zz".repeat(32)).is_err());
}

#[test]
fn status_reads_code_then_message() {
    let err = ObjectError::from(Status::not_found("no object b/k"));
    assert_eq!(err.to_string(), "NOT_FOUND: no object b/k");
    assert_eq!(err.code(), Some(Code::NotFound));
    let err = ObjectError::from(Status::unavailable(""));
    assert_eq!(err.to_string(), "UNAVAILABLE");
}

#[test]
fn only_unavailability_and_transport_failures_are_retried() {
    assert!(is_retryable(&Status::unavailable("too few nodes")));
    assert!(!is_retryable(&Status::not_found("no object")));
    assert!(!is_retryable(&Status::unknown("handler failed")));
    assert!(is_retryable(&Status::unknown(
        "Service was not ready: transport error"
    )));
    let local = Status::from_error(Box::new(io::Error::other("connection reset")));
    assert!(is_retryable(&local));
}

#[tokio::test]
async fn upload_body_is_cut_into_chunks_and_hashed() {
    let data: Vec<u8> = (0..(2 * CHUNK_BYTES + 10)).map(|i| i as u8).collect();
    let (tx, mut rx) = mpsc::channel(8);
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen_in = seen.clone();
    let progress: Progress =
        Arc::new(move |n| seen_in.store(n, std::sync::atomic::Ordering::SeqCst));
    let sent = send_body(&data[..], tx, Some(progress)).await;
    let Ok((size, sha)) = sent else {
        panic!("upload body failed")
    };
    assert_eq!(size, data.len() as u64);
    assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), size);
    let mut sizes = Vec::new();
    while let Some(PutRequest {
        msg: Some(put_request::Msg::Data(chunk)),
    }) = rx.recv().await
    {
        sizes.push(chunk.len());
    }
    assert_eq!(sizes, vec![CHUNK_BYTES, CHUNK_BYTES, 10]);
}

#[tokio::test]
async fn failed_download_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("video.mp4");
    let (partial, _file) = PartialFile::create(&target).await.expect("partial file");
    assert!(partial.path.exists());
    let temp = partial.path.clone();
    drop(partial);
    assert!(!temp.exists());
    assert!(!target.exists());

    let (partial, file) = PartialFile::create(&target).await.expect("partial file");
    drop(file);
    let temp = partial.path.clone();
    partial.persist().await.expect("persist");
    assert!(target.exists());
    assert!(!temp.exists());
}
