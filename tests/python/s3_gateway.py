"""boto3 against a tresor node's S3 port, as a vendor's software would use it.

Run by `tests/tests/t56_s3.rs`, which starts the cluster, makes the keys and
checks the other side (gRPC, the audit log). Each scenario asserts what an S3
client must see and exits non-zero, naming the check, on the first miss.

    python3 s3_gateway.py SCENARIO ENDPOINT CA_FILE [ARGS...]

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import base64
import datetime
import hashlib
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client(endpoint, ca):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        verify=ca if ca != "-" else False,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path"},
            # Presigned URLs too: boto3 presigns with SigV2 otherwise.
            signature_version="s3v4",
        ),
    )


def code_of(call):
    """The S3 error code `call` fails with (None when it succeeds)."""
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def expect(what, got, want):
    if got != want:
        print(f"FAILED {what}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok {what}")


def main_scenario(s3, file_path, grpc_key, grpc_file):
    data = open(file_path, "rb").read()
    md5 = hashlib.md5(data).hexdigest()

    expect("create bucket", s3.create_bucket(Bucket="evidence")["ResponseMetadata"]["HTTPStatusCode"], 200)
    expect("create it again", code_of(lambda: s3.create_bucket(Bucket="evidence")), "BucketAlreadyOwnedByYou")
    expect("head bucket", s3.head_bucket(Bucket="evidence")["ResponseMetadata"]["HTTPStatusCode"], 200)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect("list buckets", "evidence" in names and "footage" in names, True)

    put = s3.put_object(
        Bucket="footage",
        Key="cam/one.bin",
        Body=data,
        ContentType="video/mp4",
        Metadata={"unit": "17", "case": "none"},
        ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
    )
    expect("put ETag is the MD5", put["ETag"], f'"{md5}"')

    got = s3.get_object(Bucket="footage", Key="cam/one.bin")
    expect("get bytes", hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(data).hexdigest())
    expect("get content type", got["ContentType"], "video/mp4")
    expect("get metadata", got["Metadata"], {"unit": "17", "case": "none"})
    expect("get ETag", got["ETag"], f'"{md5}"')

    part = s3.get_object(Bucket="footage", Key="cam/one.bin", Range="bytes=1000-1999")
    expect("range status", part["ResponseMetadata"]["HTTPStatusCode"], 206)
    expect("range bytes", part["Body"].read(), data[1000:2000])
    expect("range header", part["ContentRange"], f"bytes 1000-1999/{len(data)}")
    tail = s3.get_object(Bucket="footage", Key="cam/one.bin", Range="bytes=-100")
    expect("suffix range", tail["Body"].read(), data[-100:])
    expect(
        "range past the end",
        code_of(lambda: s3.get_object(Bucket="footage", Key="cam/one.bin", Range=f"bytes={len(data) + 5}-")),
        "InvalidRange",
    )

    expect(
        "If-None-Match with its ETag",
        code_of(lambda: s3.get_object(Bucket="footage", Key="cam/one.bin", IfNoneMatch=f'"{md5}"')),
        "304",
    )
    expect(
        "If-Match with another ETag",
        code_of(lambda: s3.get_object(Bucket="footage", Key="cam/one.bin", IfMatch='"0123"')),
        "PreconditionFailed",
    )
    expect(
        "If-Match with its ETag",
        s3.get_object(Bucket="footage", Key="cam/one.bin", IfMatch=f'"{md5}"')["Body"].read() == data,
        True,
    )

    head = s3.head_object(Bucket="footage", Key="cam/one.bin")
    expect("head length", head["ContentLength"], len(data))

    expect(
        "overwrite refused (immutable)",
        code_of(lambda: s3.put_object(Bucket="footage", Key="cam/one.bin", Body=b"other bytes")),
        "PreconditionFailed",
    )
    wrong_md5 = base64.b64encode(hashlib.md5(b"not these bytes").digest()).decode()
    expect(
        "wrong Content-MD5",
        code_of(lambda: s3.put_object(Bucket="footage", Key="cam/bad-md5.bin", Body=data, ContentMD5=wrong_md5)),
        "BadDigest",
    )
    expect("nothing stored after BadDigest", code_of(lambda: s3.head_object(Bucket="footage", Key="cam/bad-md5.bin")), "404")
    wrong_sha = base64.b64encode(hashlib.sha256(b"not these bytes").digest()).decode()
    expect(
        "wrong x-amz-checksum-sha256",
        code_of(lambda: s3.put_object(Bucket="footage", Key="cam/bad-sha.bin", Body=data, ChecksumSHA256=wrong_sha)),
        "BadDigest",
    )
    expect("nothing stored after a wrong checksum", code_of(lambda: s3.head_object(Bucket="footage", Key="cam/bad-sha.bin")), "404")
    for algorithm in ["CRC32", "SHA1", "SHA256"]:
        s3.put_object(Bucket="footage", Key=f"cam/checked-{algorithm}.bin", Body=data, ChecksumAlgorithm=algorithm)
        expect(f"checked with {algorithm}", s3.head_object(Bucket="footage", Key=f"cam/checked-{algorithm}.bin")["ContentLength"], len(data))

    # What the gRPC API stored reads back over S3, its ETag the SHA-256.
    grpc_data = open(grpc_file, "rb").read()
    native = s3.get_object(Bucket="footage", Key=grpc_key)
    expect("gRPC object's bytes", native["Body"].read() == grpc_data, True)
    expect("gRPC object's ETag", native["ETag"], '"' + hashlib.sha256(grpc_data).hexdigest() + '"')

    for i in range(5):
        s3.put_object(Bucket="footage", Key=f"list/a/{i}.bin", Body=b"x" * i)
    s3.put_object(Bucket="footage", Key="list/b/0.bin", Body=b"b")
    s3.put_object(Bucket="footage", Key="list/top.bin", Body=b"t")
    listed = s3.list_objects_v2(Bucket="footage", Prefix="list/", Delimiter="/")
    expect("v2 common prefixes", [p["Prefix"] for p in listed.get("CommonPrefixes", [])], ["list/a/", "list/b/"])
    expect("v2 keys beside them", [o["Key"] for o in listed.get("Contents", [])], ["list/top.bin"])
    keys, token, pages = [], None, 0
    while True:
        args = {"Bucket": "footage", "Prefix": "list/", "MaxKeys": 2}
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(**args)
        pages += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    expect("v2 paged keys", keys, [f"list/a/{i}.bin" for i in range(5)] + ["list/b/0.bin", "list/top.bin"])
    expect("v2 pages", pages, 4)
    after = s3.list_objects_v2(Bucket="footage", Prefix="list/", StartAfter="list/a/3.bin")
    expect("v2 start-after", [o["Key"] for o in after["Contents"]], ["list/a/4.bin", "list/b/0.bin", "list/top.bin"])
    v1 = s3.list_objects(Bucket="footage", Prefix="list/", Delimiter="/", MaxKeys=1)
    expect("v1 first page", (v1["IsTruncated"], [p["Prefix"] for p in v1.get("CommonPrefixes", [])]), (True, ["list/a/"]))
    v1 = s3.list_objects(Bucket="footage", Prefix="list/", Delimiter="/", Marker=v1["NextMarker"])
    expect("v1 after the marker", [p["Prefix"] for p in v1.get("CommonPrefixes", [])], ["list/b/"])
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="footage", Prefix="list/a/")["Contents"]}
    expect("listed sizes", sizes["list/a/3.bin"], 3)

    copy = s3.copy_object(Bucket="evidence", Key="case-1/one.bin", CopySource={"Bucket": "footage", "Key": "cam/one.bin"})
    expect("copy ETag", copy["CopyObjectResult"]["ETag"], f'"{md5}"')
    copied = s3.get_object(Bucket="evidence", Key="case-1/one.bin")
    expect("copy bytes", copied["Body"].read() == data, True)
    expect("copy keeps metadata", copied["Metadata"], {"unit": "17", "case": "none"})
    expect(
        "copy onto a taken key",
        code_of(lambda: s3.copy_object(Bucket="evidence", Key="case-1/one.bin", CopySource={"Bucket": "footage", "Key": "cam/one.bin"})),
        "PreconditionFailed",
    )

    gone = s3.delete_objects(
        Bucket="footage",
        Delete={"Objects": [{"Key": f"list/a/{i}.bin"} for i in range(5)] + [{"Key": "list/never"}]},
    )
    expect("delete objects", sorted(d["Key"] for d in gone.get("Deleted", [])), sorted([f"list/a/{i}.bin" for i in range(5)] + ["list/never"]))
    expect("delete objects errors", gone.get("Errors", []), [])
    expect("deleted ones are gone", code_of(lambda: s3.head_object(Bucket="footage", Key="list/a/0.bin")), "404")
    expect("delete a missing key", s3.delete_object(Bucket="footage", Key="list/never")["ResponseMetadata"]["HTTPStatusCode"], 204)
    expect("a deleted key stays taken", code_of(lambda: s3.put_object(Bucket="footage", Key="list/a/0.bin", Body=b"again")), "PreconditionFailed")

    expect("delete a bucket with objects", code_of(lambda: s3.delete_bucket(Bucket="evidence")), "BucketNotEmpty")
    s3.delete_object(Bucket="evidence", Key="case-1/one.bin")
    expect("delete the emptied bucket", s3.delete_bucket(Bucket="evidence")["ResponseMetadata"]["HTTPStatusCode"], 204)
    expect("deleted bucket", code_of(lambda: s3.head_bucket(Bucket="evidence")), "404")
    expect("get from a missing bucket", code_of(lambda: s3.get_object(Bucket="nowhere", Key="x")), "NoSuchBucket")
    expect("get a missing key", code_of(lambda: s3.get_object(Bucket="footage", Key="cam/none")), "NoSuchKey")


def multipart_scenario(s3, file_path):
    data = open(file_path, "rb").read()
    mib = 1 << 20
    chunks = [data[0:5 * mib], data[5 * mib:10 * mib], data[10 * mib:]]
    up = s3.create_multipart_upload(Bucket="footage", Key="mp/by-hand.bin", ContentType="video/mp4", Metadata={"unit": "9"})
    uid = up["UploadId"]
    listed = s3.list_multipart_uploads(Bucket="footage")
    expect("upload listed", [u["UploadId"] for u in listed.get("Uploads", [])], [uid])
    etags = {}
    # Out of order, and part 2 sent twice (other bytes first): the latest
    # copy counts.
    for number, body in [(3, chunks[2]), (2, b"y" * (5 * mib)), (1, chunks[0]), (2, chunks[1])]:
        etags[number] = s3.upload_part(Bucket="footage", Key="mp/by-hand.bin", UploadId=uid, PartNumber=number, Body=body)["ETag"]
        expect(f"part {number} ETag", etags[number], '"' + hashlib.md5(body).hexdigest() + '"')
    parts = s3.list_parts(Bucket="footage", Key="mp/by-hand.bin", UploadId=uid)["Parts"]
    expect("list parts", [(p["PartNumber"], p["Size"]) for p in parts], [(1, 5 * mib), (2, 5 * mib), (3, len(data) - 10 * mib)])
    expect(
        "a part it does not have",
        code_of(lambda: s3.complete_multipart_upload(
            Bucket="footage", Key="mp/by-hand.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 4, "ETag": etags[1]}]})),
        "InvalidPart",
    )
    done = s3.complete_multipart_upload(
        Bucket="footage", Key="mp/by-hand.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in [1, 2, 3]]},
    )
    digests = b"".join(hashlib.md5(c).digest() for c in chunks)
    want_etag = '"' + hashlib.md5(digests).hexdigest() + '-3"'
    expect("multipart ETag", done["ETag"], want_etag)
    got = s3.get_object(Bucket="footage", Key="mp/by-hand.bin")
    expect("multipart bytes", hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(data).hexdigest())
    expect("multipart content type", got["ContentType"], "video/mp4")
    expect("multipart metadata", got["Metadata"], {"unit": "9"})
    expect("completed upload is gone", code_of(lambda: s3.list_parts(Bucket="footage", Key="mp/by-hand.bin", UploadId=uid)), "NoSuchUpload")
    expect("no uploads left", s3.list_multipart_uploads(Bucket="footage").get("Uploads", []), [])

    gone = s3.create_multipart_upload(Bucket="footage", Key="mp/aborted.bin")["UploadId"]
    s3.upload_part(Bucket="footage", Key="mp/aborted.bin", UploadId=gone, PartNumber=1, Body=chunks[0])
    s3.abort_multipart_upload(Bucket="footage", Key="mp/aborted.bin", UploadId=gone)
    expect("aborted upload is gone", code_of(lambda: s3.list_parts(Bucket="footage", Key="mp/aborted.bin", UploadId=gone)), "NoSuchUpload")
    expect("nothing stored by the abort", code_of(lambda: s3.head_object(Bucket="footage", Key="mp/aborted.bin")), "404")
    expect(
        "an upload to a taken key",
        code_of(lambda: s3.create_multipart_upload(Bucket="footage", Key="mp/by-hand.bin")),
        "PreconditionFailed",
    )

    # A lock asked for at the start is the completed object's.
    now = datetime.datetime.now(datetime.timezone.utc)
    b = "footage"
    uid = s3.create_multipart_upload(Bucket=b, Key="lock/mp.bin", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=now + 15 * DAY, ObjectLockLegalHoldStatus="ON")["UploadId"]
    etag = s3.upload_part(Bucket=b, Key="lock/mp.bin", UploadId=uid, PartNumber=1, Body=b"one part")["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="lock/mp.bin", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    head = s3.head_object(Bucket=b, Key="lock/mp.bin")
    expect("multipart with lock: mode", head.get("ObjectLockMode"), "COMPLIANCE")
    expect("multipart with lock: until", now + 15 * DAY - datetime.timedelta(seconds=1) <= head["ObjectLockRetainUntilDate"] <= now + 16 * DAY, True)
    expect("multipart with lock: hold", head.get("ObjectLockLegalHoldStatus"), "ON")

    # What the transfer manager does with a large file: parallel parts.
    from boto3.s3.transfer import TransferConfig
    config = TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib, max_concurrency=4)
    s3.upload_file(file_path, "footage", "mp/transfer.bin", Config=config)
    head = s3.head_object(Bucket="footage", Key="mp/transfer.bin")
    expect("transfer manager ETag", head["ETag"].endswith('-3"'), True)
    out = file_path + ".back"
    s3.download_file("footage", "mp/transfer.bin", out, Config=config)
    expect("transfer manager bytes", open(out, "rb").read() == data, True)


def stale_scenario(s3, step):
    if step == "start":
        uid = s3.create_multipart_upload(Bucket="footage", Key="mp/left.bin")["UploadId"]
        s3.upload_part(Bucket="footage", Key="mp/left.bin", UploadId=uid, PartNumber=1, Body=b"left behind")
        expect("left upload listed", len(s3.list_parts(Bucket="footage", Key="mp/left.bin", UploadId=uid)["Parts"]), 1)
        print(f"UPLOAD {uid}")
    elif step == "sweep":
        # Starts a sweep in the background.
        s3.list_multipart_uploads(Bucket="footage")
    else:
        expect("swept", s3.list_multipart_uploads(Bucket="footage").get("Uploads", []), [])
        expect("swept parts", code_of(lambda: s3.list_parts(Bucket="footage", Key="mp/left.bin", UploadId=step)), "NoSuchUpload")


def ingest_scenario(s3):
    s3.put_object(Bucket="footage", Key="cam/from-camera.bin", Body=b"camera bytes")
    expect("ingest may check its bucket", s3.head_bucket(Bucket="footage")["ResponseMetadata"]["HTTPStatusCode"], 200)
    expect("ingest may not read", code_of(lambda: s3.get_object(Bucket="footage", Key="cam/from-camera.bin")), "AccessDenied")
    expect("ingest may not list", code_of(lambda: s3.list_objects_v2(Bucket="footage")), "AccessDenied")
    expect("ingest may not delete", code_of(lambda: s3.delete_object(Bucket="footage", Key="cam/from-camera.bin")), "AccessDenied")
    expect("ingest may not make buckets", code_of(lambda: s3.create_bucket(Bucket="mine")), "AccessDenied")


def refused_scenario(s3, want):
    expect("refused", code_of(lambda: s3.list_objects_v2(Bucket="footage")), want)


DAY = datetime.timedelta(days=1)


def retention(mode, until):
    return {"Mode": mode, "RetainUntilDate": until}


def default_lock(mode, days):
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}}


def lock_scenario(s3):
    """Object Lock as the admin: retention, legal holds, bucket defaults."""
    now = datetime.datetime.now(datetime.timezone.utc)
    b = "footage"
    s3.put_object(Bucket=b, Key="lock/a.bin", Body=b"a")
    expect("no lock yet", code_of(lambda: s3.get_object_retention(Bucket=b, Key="lock/a.bin")), "NoSuchObjectLockConfiguration")
    until = now + 40 * DAY
    s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=retention("COMPLIANCE", until))
    got = s3.get_object_retention(Bucket=b, Key="lock/a.bin")["Retention"]
    expect("retention mode", got["Mode"], "COMPLIANCE")
    kept = got["RetainUntilDate"]
    expect("kept as asked, to the next whole day", until - datetime.timedelta(seconds=1) <= kept <= until + DAY, True)
    expect("a locked object is not deleted", code_of(lambda: s3.delete_object(Bucket=b, Key="lock/a.bin")), "AccessDenied")
    shorter = retention("COMPLIANCE", now + 10 * DAY)
    expect("never shortened", code_of(lambda: s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=shorter)), "AccessDenied")
    governance = retention("GOVERNANCE", now + 50 * DAY)
    expect("no governance mode", code_of(lambda: s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=governance)), "InvalidArgument")
    past = retention("COMPLIANCE", now - DAY)
    expect("no date in the past", code_of(lambda: s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=past)), "InvalidArgument")
    expect("the same again", code_of(lambda: s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=retention("COMPLIANCE", until))), None)
    head = s3.head_object(Bucket=b, Key="lock/a.bin")
    expect("head: mode", head.get("ObjectLockMode"), "COMPLIANCE")
    expect("head: until", head.get("ObjectLockRetainUntilDate"), kept)
    expect("head: no hold", head.get("ObjectLockLegalHoldStatus"), "OFF")

    s3.put_object(Bucket=b, Key="lock/b.bin", Body=b"b")
    hold = lambda: s3.get_object_legal_hold(Bucket=b, Key="lock/b.bin")["LegalHold"]["Status"]
    expect("no hold yet", hold(), "OFF")
    for _ in range(2):
        s3.put_object_legal_hold(Bucket=b, Key="lock/b.bin", LegalHold={"Status": "ON"})
    expect("held", hold(), "ON")
    expect("get: held", s3.get_object(Bucket=b, Key="lock/b.bin").get("ObjectLockLegalHoldStatus"), "ON")
    expect("a held object is not deleted", code_of(lambda: s3.delete_object(Bucket=b, Key="lock/b.bin")), "AccessDenied")
    for _ in range(2):
        s3.put_object_legal_hold(Bucket=b, Key="lock/b.bin", LegalHold={"Status": "OFF"})
    expect("released", hold(), "OFF")
    expect("deleted once released", s3.delete_object(Bucket=b, Key="lock/b.bin")["ResponseMetadata"]["HTTPStatusCode"], 204)
    expect("no hold on a missing key", code_of(lambda: s3.put_object_legal_hold(Bucket=b, Key="lock/none.bin", LegalHold={"Status": "ON"})), "NoSuchKey")

    s3.put_object(Bucket=b, Key="lock/c.bin", Body=b"c", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=now + 20 * DAY, ObjectLockLegalHoldStatus="ON")
    head = s3.head_object(Bucket=b, Key="lock/c.bin")
    expect("put with lock: mode", head.get("ObjectLockMode"), "COMPLIANCE")
    expect("put with lock: until", now + 20 * DAY - datetime.timedelta(seconds=1) <= head["ObjectLockRetainUntilDate"] <= now + 21 * DAY, True)
    expect("put with lock: hold", head.get("ObjectLockLegalHoldStatus"), "ON")

    config = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    expect("lock enabled", config["ObjectLockEnabled"], "Enabled")
    expect("no default yet", "Rule" in config, False)
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=default_lock("COMPLIANCE", 7))
    config = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    expect("default retention", config["Rule"]["DefaultRetention"], {"Mode": "COMPLIANCE", "Days": 7})
    s3.put_object(Bucket=b, Key="lock/d.bin", Body=b"d")
    kept = s3.get_object_retention(Bucket=b, Key="lock/d.bin")["Retention"]["RetainUntilDate"]
    expect("the default applies to new objects", now + 7 * DAY <= kept <= now + 7 * DAY + datetime.timedelta(minutes=10), True)
    governance = default_lock("GOVERNANCE", 7)
    expect("no governance default", code_of(lambda: s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=governance)), "InvalidArgument")
    made = s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    expect("a bucket made with Object Lock", made["ResponseMetadata"]["HTTPStatusCode"], 200)


def lock_reader_scenario(s3):
    """Object Lock as a principal with role read on the bucket only."""
    b = "footage"
    expect("reader sees a retention", s3.get_object_retention(Bucket=b, Key="lock/a.bin")["Retention"]["Mode"], "COMPLIANCE")
    expect("reader sees a hold", s3.get_object_legal_hold(Bucket=b, Key="lock/c.bin")["LegalHold"]["Status"], "ON")
    far = retention("COMPLIANCE", datetime.datetime.now(datetime.timezone.utc) + 400 * DAY)
    expect("reader may not lock", code_of(lambda: s3.put_object_retention(Bucket=b, Key="lock/a.bin", Retention=far)), "AccessDenied")
    expect("reader may not hold", code_of(lambda: s3.put_object_legal_hold(Bucket=b, Key="lock/a.bin", LegalHold={"Status": "ON"})), "AccessDenied")
    expect("reader may not set defaults", code_of(lambda: s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=default_lock("COMPLIANCE", 1))), "AccessDenied")


def addressing_scenario(s3, endpoint, ca):
    """Presigned URLs, the region, virtual-hosted-style addressing."""
    import socket
    import ssl
    import time
    import urllib.error
    import urllib.request

    tls = ssl.create_default_context(cafile=ca)

    def fetch(request):
        try:
            with urllib.request.urlopen(request, context=tls, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    signed = {"Bucket": "footage", "Key": "pre/signed.bin"}
    put_url = s3.generate_presigned_url("put_object", Params=signed, ExpiresIn=300)
    status, body = fetch(urllib.request.Request(put_url, data=b"presigned bytes", method="PUT"))
    expect("presigned PUT", (status, body if status != 200 else b""), (200, b""))
    get_url = s3.generate_presigned_url("get_object", Params=signed, ExpiresIn=300)
    expect("presigned GET", fetch(get_url), (200, b"presigned bytes"))
    forged = get_url.replace("pre%2Fsigned.bin", "pre%2Fother.bin").replace("pre/signed.bin", "pre/other.bin")
    status, body = fetch(forged)
    expect("a presigned URL names one object", (status, b"SignatureDoesNotMatch" in body), (403, True))
    short = s3.generate_presigned_url("get_object", Params=signed, ExpiresIn=1)
    time.sleep(2.5)
    status, body = fetch(short)
    expect("an expired presigned URL", (status, b"expired" in body), (403, True))

    elsewhere = boto3.client(
        "s3", endpoint_url=endpoint, verify=ca, region_name="eu-central-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    expect("signed for another region", code_of(lambda: elsewhere.list_objects_v2(Bucket="footage")), "AuthorizationHeaderMalformed")

    # bucket.s3.localhost, resolved to loopback here as systemd-resolved does.
    real = socket.getaddrinfo

    def loopback(host, *args, **kwargs):
        if isinstance(host, str) and (host == "s3.localhost" or host.endswith(".s3.localhost")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = loopback
    port = endpoint.rsplit(":", 1)[1]
    virtual = boto3.client(
        "s3", endpoint_url=f"https://s3.localhost:{port}", verify=ca, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "virtual"}),
    )
    virtual.put_object(Bucket="footage", Key="vh/one.bin", Body=b"virtual")
    expect("virtual-hosted GET", virtual.get_object(Bucket="footage", Key="vh/one.bin")["Body"].read(), b"virtual")
    listed = virtual.list_objects_v2(Bucket="footage", Prefix="vh/")
    expect("virtual-hosted list", [o["Key"] for o in listed["Contents"]], ["vh/one.bin"])
    expect("the same object path-style", s3.get_object(Bucket="footage", Key="vh/one.bin")["Body"].read(), b"virtual")
    expect("virtual-hosted head of a missing bucket", code_of(lambda: virtual.head_bucket(Bucket="nowhere")), "404")


def main():
    scenario, endpoint, ca = sys.argv[1:4]
    s3 = client(endpoint, ca)
    if scenario == "main":
        main_scenario(s3, *sys.argv[4:7])
    elif scenario == "multipart":
        multipart_scenario(s3, sys.argv[4])
    elif scenario == "stale":
        stale_scenario(s3, sys.argv[4])
    elif scenario == "ingest":
        ingest_scenario(s3)
    elif scenario == "refused":
        refused_scenario(s3, sys.argv[4])
    elif scenario == "lock":
        lock_scenario(s3)
    elif scenario == "addressing":
        addressing_scenario(s3, endpoint, ca)
    elif scenario == "lock-reader":
        lock_reader_scenario(s3)
    else:
        sys.exit(f"unknown scenario {scenario}")
    print("PASSED")


if __name__ == "__main__":
    main()
