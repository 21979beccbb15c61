//! Status codes `proto/tresor/v1/objects.proto` documents for the Objects
//! and Uploads services that no other file triggers: Puts with no or two
//! headers or into any `tresor.` bucket; unknown buckets, missing and
//! deleted keys; an empty object read past its end; bad credentials, no
//! role and bad session ids on Uploads; UploadParts with two headers,
//! without `finish`, over the node's upload limit and taken over; and
//! CompleteUpload with a wrong SHA-256, a taken key, twice and aborted.

use std::time::Duration;

use futures::stream::iter;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tresor_client::channel::transport_with_deadline;
use tresor_client::{Credentials, Transport};
use tresor_node::config::DataTuning;
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_client::ObjectsClient;
use tresor_proto::v1::put_request::Msg as PutMsg;
use tresor_proto::v1::upload_parts_request::Msg as PartMsg;
use tresor_proto::v1::uploads_client::UploadsClient;
use tresor_tests::{cluster, header, pattern, sha256_hex, spec, Harness, ADMIN_PRINCIPAL};

/// The deadline of every call and the bound of every wait.
const WAIT: Duration = Duration::from_secs(120);

type Uploads = UploadsClient<Transport>;

/// A connection to node `id` as `creds`, every call with a deadline.
async fn transport(h: &Harness, id: u64, creds: &Credentials) -> anyhow::Result<Transport> {
    let channel = tresor_client::connect_with(&h.endpoint(id), creds).await?;
    Ok(transport_with_deadline(channel, creds, WAIT))
}

/// Node `id`'s Uploads service as `creds`.
async fn uploads(h: &Harness, id: u64, creds: &Credentials) -> anyhow::Result<Uploads> {
    Ok(UploadsClient::new(transport(h, id, creds).await?))
}

/// `call`, bounded (a deadline does not bound a streamed answer's body).
async fn within<T>(call: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(WAIT, call).await?)
}

/// Asserts that `result` is a refusal with `code` whose message contains
/// `words`, and returns it.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    words: &str,
) -> tonic::Status {
    match result {
        Ok(answer) => panic!("expected {code:?} ({words}), got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(words), "{words:?}: {status:?}");
            status
        }
    }
}

/// The retry hint of a refusal, in milliseconds.
fn pushback(status: &tonic::Status) -> Option<&str> {
    let hint = status.metadata().get("grpc-retry-pushback-ms");
    hint.and_then(|v| v.to_str().ok())
}

/// A Put's request stream: one message for each of `msgs`.
fn put_msgs(msgs: Vec<PutMsg>) -> impl futures::Stream<Item = pb::PutRequest> {
    iter(msgs.into_iter().map(|m| pb::PutRequest { msg: Some(m) }))
}

fn stat_req(bucket: &str, key: &str) -> pb::StatRequest {
    let (bucket, key) = (bucket.into(), key.into());
    pb::StatRequest { bucket, key }
}

fn list_req(bucket: &str, page_size: u32) -> pb::ListRequest {
    let mut request = pb::ListRequest::default();
    (request.bucket, request.page_size) = (bucket.into(), page_size);
    request
}

fn delete_req(bucket: &str, key: &str) -> pb::DeleteRequest {
    let (bucket, key) = (bucket.into(), key.into());
    pb::DeleteRequest { bucket, key }
}

/// An UploadParts message.
fn part(msg: PartMsg) -> pb::UploadPartsRequest {
    pb::UploadPartsRequest { msg: Some(msg) }
}

fn parts_head(id: &str, offset: u64) -> pb::UploadPartsRequest {
    let upload_id = id.into();
    part(PartMsg::Header(pb::UploadPartsHeader { upload_id, offset }))
}

fn parts_data(bytes: &[u8]) -> pb::UploadPartsRequest {
    part(PartMsg::Data(bytes.to_vec()))
}

/// CreateUpload of `header`.
async fn open(up: &mut Uploads, header: pb::PutHeader) -> Result<pb::UploadInfo, tonic::Status> {
    let request = pb::CreateUploadRequest {
        header: Some(header),
    };
    Ok(up.create_upload(request).await?.into_inner())
}

/// GetUpload of session `id`.
async fn session(up: &mut Uploads, id: &str) -> Result<pb::UploadInfo, tonic::Status> {
    let upload_id = id.into();
    let request = pb::UploadRef { upload_id };
    Ok(up.get_upload(request).await?.into_inner())
}

/// CompleteUpload of session `id`: `size` bytes, SHA-256 `sha` expected.
async fn complete(up: &mut Uploads, id: &str, size: u64, sha: &str) -> Result<(), tonic::Status> {
    let (upload_id, expected_sha256) = (id.into(), sha.into());
    let request = pb::CompleteUploadRequest {
        upload_id,
        size,
        expected_sha256,
    };
    up.complete_upload(request).await.map(drop)
}

/// AbortUpload of session `id`.
async fn abort(up: &mut Uploads, id: &str) -> Result<(), tonic::Status> {
    let upload_id = id.into();
    up.abort_upload(pb::UploadRef { upload_id }).await.map(drop)
}

/// One UploadParts call sending `messages`: the progress it reported, or
/// the status it ended with, before or after its stream opened.
async fn parts(
    client: &mut Uploads,
    messages: Vec<pb::UploadPartsRequest>,
) -> Result<Vec<pb::UploadProgress>, tonic::Status> {
    let call = async {
        let mut stream = client.upload_parts(iter(messages)).await?.into_inner();
        let mut progress = Vec::new();
        while let Some(p) = stream.message().await? {
            progress.push(p);
        }
        Ok::<_, tonic::Status>(progress)
    };
    match tokio::time::timeout(WAIT, call).await {
        Ok(ended) => ended,
        Err(_) => Err(tonic::Status::deadline_exceeded("no end in time")),
    }
}

#[tokio::test]
async fn object_calls_answer_the_codes_the_proto_documents() -> anyhow::Result<()> {
    let h = cluster!(data, shard = 4096)?;
    let mut o = ObjectsClient::new(transport(&h, 2, h.credentials()).await?);
    let named = |bucket: &str, key: &str| PutMsg::Header(header(bucket, key));

    // Put: no message at all (so no header); a second header after data,
    // storing nothing; any `tresor.` bucket, even one that does not exist.
    let r = o.put(put_msgs(vec![])).await;
    assert_refused(r, Code::InvalidArgument, "header");
    let twice = vec![named("footage", "twice"), PutMsg::Data(b"abc".to_vec())];
    let r = o.put(put_msgs([twice.clone(), twice].concat())).await;
    assert_refused(r, Code::InvalidArgument, "one header");
    let r = o.stat(stat_req("footage", "twice")).await;
    assert_refused(r, Code::NotFound, "no object");
    let r = o.put(put_msgs(vec![named("tresor.other", "k")])).await;
    assert_refused(r, Code::PermissionDenied, "kept by the cluster");

    // Get of an empty object: offset 0 sends only its info; any offset
    // above 0 is OUT_OF_RANGE.
    o.put(put_msgs(vec![named("footage", "empty")])).await?;
    let (info, bytes) = within(h.get(3, "footage", "empty", Some(0), None)).await??;
    assert_eq!((info.size, bytes.len()), (0, 0));
    let r = within(h.get(3, "footage", "empty", Some(1), None)).await?;
    assert_refused(r, Code::OutOfRange, "has 0 bytes");

    // An unknown bucket: NOT_FOUND naming it, whatever the call.
    let unknown = "no bucket named nowhere";
    let r = within(h.get(4, "nowhere", "k", None, None)).await?;
    assert_refused(r, Code::NotFound, unknown);
    let r = o.stat(stat_req("nowhere", "k")).await;
    assert_refused(r, Code::NotFound, unknown);
    let r = o.list(list_req("nowhere", 0)).await;
    assert_refused(r, Code::NotFound, unknown);
    let r = o.delete(delete_req("nowhere", "k")).await;
    assert_refused(r, Code::NotFound, unknown);
    // (and a malformed one: INVALID_ARGUMENT naming the field)
    let r = o.list(list_req("Bad_Name", 0)).await;
    assert_refused(r, Code::InvalidArgument, "invalid bucket name");

    // Delete of a key that never held an object.
    let r = o.delete(delete_req("footage", "never")).await;
    assert_refused(r, Code::NotFound, "no object footage/never");

    // A deleted object: Delete again, Stat and Get answer NOT_FOUND naming
    // the deletion; CreateUpload of its key answers ALREADY_EXISTS.
    let gone = vec![named("footage", "gone"), PutMsg::Data(b"x".to_vec())];
    o.put(put_msgs(gone)).await?;
    o.delete(delete_req("footage", "gone")).await?;
    let deleted = format!("deleted by {ADMIN_PRINCIPAL}");
    let r = o.delete(delete_req("footage", "gone")).await;
    assert_refused(r, Code::NotFound, &deleted);
    let r = o.stat(stat_req("footage", "gone")).await;
    assert_refused(r, Code::NotFound, &deleted);
    let r = within(h.get(5, "footage", "gone", None, None)).await?;
    assert_refused(r, Code::NotFound, &deleted);
    let mut up = uploads(&h, 6, h.credentials()).await?;
    let r = open(&mut up, header("footage", "gone")).await;
    assert_refused(r, Code::AlreadyExists, "never used again");

    // List: a page size over 10000 is cut to 10000, not refused.
    let page = o.list(list_req("footage", u32::MAX)).await?.into_inner();
    let keys: Vec<&str> = page.objects.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["empty"]);
    assert!(page.next_page_token.is_empty(), "{}", page.next_page_token);
    Ok(())
}

#[tokio::test]
async fn upload_calls_answer_the_codes_the_proto_documents() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    s.data = DataTuning {
        shard_bytes: 4096,
        part_bytes: 1 << 20,
        ..Default::default()
    };
    // One upload at a time per node, to show UploadParts and Put share it.
    s.admission.max_uploads = 1;
    s.admission.retry_after_ms = 500;
    let h = cluster!(data, spec = s)?;
    let creds = h.credentials();
    // Calls refused before data flows go through node 5. An UploadParts
    // call failing after its stream opened keeps its node's permit until
    // its failure is on record: each of those gets a node of its own.
    let mut up = uploads(&h, 5, creds).await?;
    let unknown = "00".repeat(16);
    let finish = || part(PartMsg::Finish(true));

    // Credentials, as for every call: a malformed bearer token; a
    // principal without a role, named with the bucket.
    let bad = creds.clone().without_identity().with_token("not-a-token")?;
    let r = open(&mut uploads(&h, 5, &bad).await?, header("footage", "k")).await;
    assert_refused(r, Code::Unauthenticated, "malformed");
    let mut nobody = uploads(&h, 5, &h.client_credentials("nobody")?).await?;
    let r = open(&mut nobody, header("footage", "k")).await;
    let denied = assert_refused(r, Code::PermissionDenied, "principal nobody");
    assert!(denied.message().contains("footage"), "{denied:?}");

    // CreateUpload: no header, a malformed bucket name, a malformed SHA-256.
    let r = up.create_upload(pb::CreateUploadRequest::default()).await;
    assert_refused(r, Code::InvalidArgument, "invalid bucket name");
    let r = open(&mut up, header("Bad_Name", "k")).await;
    assert_refused(r, Code::InvalidArgument, "invalid bucket name");
    let mut bad_sum = header("footage", "k");
    bad_sum.expected_sha256 = "abc".into();
    let r = open(&mut up, bad_sum).await;
    assert_refused(r, Code::InvalidArgument, "expected_sha256");

    // A malformed and an unknown session id, on the calls taking one.
    let (not_id, not_open) = ("not an upload id", "no open upload");
    let r = parts(&mut up, vec![parts_head("zz", 0)]).await;
    assert_refused(r, Code::InvalidArgument, not_id);
    let r = parts(&mut up, vec![parts_head(&unknown, 0)]).await;
    assert_refused(r, Code::NotFound, not_open);
    let r = complete(&mut up, "zz", 0, "").await;
    assert_refused(r, Code::InvalidArgument, not_id);
    let r = complete(&mut up, &unknown, 0, "").await;
    assert_refused(r, Code::NotFound, not_open);
    assert_refused(abort(&mut up, "zz").await, Code::InvalidArgument, not_id);

    // UploadParts with a second header, then one ending without `finish`:
    // refused, and nothing is durable.
    let id = open(&mut up, header("footage", "sent")).await?.upload_id;
    let twice = vec![parts_head(&id, 0), parts_data(b"abc"), parts_head(&id, 0)];
    let r = parts(&mut uploads(&h, 1, creds).await?, twice).await;
    assert_refused(r, Code::InvalidArgument, "one header");
    let cut = vec![parts_head(&id, 0), parts_data(b"abc")];
    let r = parts(&mut uploads(&h, 2, creds).await?, cut).await;
    assert_refused(r, Code::Cancelled, "without `finish`");
    assert_eq!(session(&mut up, &id).await?.durable_bytes, 0);

    // Completed: CompleteUpload again is NOT_FOUND; Stat shows the object.
    let body = pattern(100_000, 2);
    let size = body.len() as u64;
    let sent = vec![parts_head(&id, 0), parts_data(&body), finish()];
    let progress = parts(&mut uploads(&h, 3, creds).await?, sent).await?;
    assert_eq!(progress.last().map(|p| p.durable_bytes), Some(size));
    complete(&mut up, &id, size, "").await?;
    let r = complete(&mut up, &id, size, "").await;
    assert_refused(r, Code::NotFound, not_open);
    let info = within(h.stat(4, "footage", "sent")).await??;
    assert_eq!(info.sha256, sha256_hex(&body));

    // CompleteUpload when the SHA-256 given at creation does not match, or
    // the one given now is malformed: INVALID_ARGUMENT, the session stays
    // open. Once aborted, UploadParts and CompleteUpload are NOT_FOUND.
    let mut expecting = header("footage", "wrong-sum");
    expecting.expected_sha256 = sha256_hex(b"other bytes");
    let id = open(&mut up, expecting).await?.upload_id;
    let sent = vec![parts_head(&id, 0), parts_data(&body), finish()];
    parts(&mut uploads(&h, 4, creds).await?, sent).await?;
    let r = complete(&mut up, &id, size, "").await;
    assert_refused(r, Code::InvalidArgument, "mismatch");
    let r = complete(&mut up, &id, size, "xyz").await;
    assert_refused(r, Code::InvalidArgument, "64 hex digits");
    assert!(session(&mut up, &id).await?.finished, "still open");
    abort(&mut up, &id).await?;
    let r = parts(&mut up, vec![parts_head(&id, size)]).await;
    assert_refused(r, Code::NotFound, not_open);
    let r = complete(&mut up, &id, size, "").await;
    assert_refused(r, Code::NotFound, not_open);

    // CompleteUpload once a Put took the key: ALREADY_EXISTS.
    let id = open(&mut up, header("footage", "taken")).await?.upload_id;
    within(h.put(5, "footage", "taken", b"first")).await??;
    let r = complete(&mut up, &id, 0, "").await;
    assert_refused(r, Code::AlreadyExists, "already exists");

    // A call holding node 6's only upload permit (its first part is
    // durable, so it was admitted): a Put and another UploadParts there
    // are refused with the retry hint.
    let contested = open(&mut up, header("footage", "contested")).await?;
    let (id, part_bytes) = (contested.upload_id, contested.part_bytes);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadPartsRequest>(4);
    tx.send(parts_head(&id, 0)).await?;
    let whole_part = pattern(part_bytes as usize, 4);
    tx.send(parts_data(&whole_part)).await?;
    let mut held = uploads(&h, 6, creds).await?;
    let first = held.upload_parts(ReceiverStream::new(rx)).await?;
    let mut first = first.into_inner();
    let progress = within(first.message()).await??;
    assert_eq!(progress.map(|p| p.durable_bytes), Some(part_bytes));
    let r = within(h.put(6, "footage", "probe", b"x")).await?;
    let busy = assert_refused(r, Code::ResourceExhausted, "its limit");
    assert_eq!(pushback(&busy), Some("500"));
    let probe = vec![parts_head(&unknown, 0)];
    let r = parts(&mut uploads(&h, 6, creds).await?, probe).await;
    let busy = assert_refused(r, Code::ResourceExhausted, "its limit");
    assert_eq!(pushback(&busy), Some("500"));

    // Another call (through node 5) takes the session over, sending only
    // `finish`, and ends OK; the first call's next part is then refused.
    let second = parts(&mut up, vec![parts_head(&id, part_bytes), finish()]).await?;
    assert!(second.is_empty(), "{second:?}");
    tx.send(parts_data(b"tail")).await?;
    tx.send(finish()).await?;
    let r = within(first.message()).await?;
    assert_refused(r, Code::FailedPrecondition, "taken over");
    let info = session(&mut up, &id).await?;
    assert_eq!((info.durable_bytes, info.finished), (part_bytes, false));
    Ok(())
}
