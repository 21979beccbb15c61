#!/usr/bin/env python3
"""A tresor client in Python, written from proto/ alone.

Uploads FILE as BUCKET/KEY through a resumable upload session (resuming
from the durable offset if the stream breaks), reads a range back and checks
it against the file, then reads the whole object and checks its SHA-256.

    python3 upload_and_verify.py FILE BUCKET/KEY [--cut-after BYTES]

Environment (what `tresor-node dev` writes to DIR/env):
    TRESOR_ENDPOINT   https://HOST:PORT of any node
    TRESOR_CA         the cluster CA certificate (PEM)
    TRESOR_TOKEN      a bearer token (`tresor-node token create PRINCIPAL`)
    TRESOR_PY_STUBS   where to generate the stubs (default: ./stubs)

`--cut-after BYTES` breaks the first upload stream off after BYTES, as a
dropped link would, to show the resume. Needs `pip install -r
requirements.txt` (grpcio, grpcio-tools).
"""

import argparse
import hashlib
import os
import sys
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "..", "proto")
MIB = 1 << 20
# Every call gets a deadline (seconds); a stream's is per message below.
CALL_DEADLINE = 30
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def stubs():
    """Generates the Python stubs from proto/ and imports them."""
    out = os.environ.get("TRESOR_PY_STUBS", os.path.join(os.getcwd(), "stubs"))
    os.makedirs(out, exist_ok=True)
    args = [
        "protoc",
        "-I" + PROTO_DIR,
        "-I" + os.path.join(os.path.dirname(protoc.__file__), "_proto"),
        "--python_out=" + out,
        "--grpc_python_out=" + out,
        "tresor/v1/objects.proto",
        "tresor/v1/admin.proto",
    ]
    if protoc.main(args) != 0:
        sys.exit("generating stubs from proto/ failed")
    sys.path.insert(0, out)
    from tresor.v1 import objects_pb2, objects_pb2_grpc

    return objects_pb2, objects_pb2_grpc


class Cut(Exception):
    """The simulated link failure."""


def connect():
    endpoint = os.environ["TRESOR_ENDPOINT"].split(",")[0].strip()
    target = endpoint.split("://", 1)[-1]
    with open(os.environ["TRESOR_CA"], "rb") as f:
        tls = grpc.ssl_channel_credentials(root_certificates=f.read())
    token = os.environ["TRESOR_TOKEN"]
    # The token travels as `authorization: Bearer ...` on every call.
    auth = grpc.metadata_call_credentials(
        lambda _context, callback: callback((("authorization", "Bearer " + token),), None)
    )
    creds = grpc.composite_channel_credentials(tls, auth)
    options = [
        ("grpc.max_send_message_length", 16 * MIB),
        ("grpc.max_receive_message_length", 16 * MIB),
    ]
    return grpc.secure_channel(target, creds, options=options)


def send_parts(pb, uploads, session, path, start, cut_after):
    """One UploadParts call from `start` to the end of the file; returns
    the durable offset the node answered last."""

    durable = [start]

    def messages():
        yield pb.UploadPartsRequest(
            header=pb.UploadPartsHeader(upload_id=session.upload_id, offset=start)
        )
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while True:
                chunk = f.read(MIB)
                if not chunk:
                    break
                if cut_after is not None and start + sent >= cut_after:
                    # The link drops once a part is durable, mid-way
                    # through the next one.
                    deadline = time.monotonic() + 60
                    while durable[0] == start and time.monotonic() < deadline:
                        time.sleep(0.05)
                    raise Cut()
                sent += len(chunk)
                yield pb.UploadPartsRequest(data=chunk)
        yield pb.UploadPartsRequest(finish=True)

    for progress in uploads.UploadParts(messages(), timeout=600):
        durable[0] = progress.durable_bytes
        print(f"part {progress.part} durable: {progress.durable_bytes} bytes", flush=True)
    return durable[0]


def upload(pb, rpc, path, bucket, key, cut_after):
    uploads = rpc.UploadsStub(CHANNEL)
    size = os.path.getsize(path)
    header = pb.PutHeader(bucket=bucket, key=key, content_type="video/mp4")
    session = uploads.CreateUpload(pb.CreateUploadRequest(header=header), timeout=CALL_DEADLINE)
    print(f"session {session.upload_id}: parts of {session.part_bytes} bytes", flush=True)
    backoff = 0.25
    for attempt in range(8):
        session = uploads.GetUpload(pb.UploadRef(upload_id=session.upload_id), timeout=CALL_DEADLINE)
        if attempt > 0:
            print(f"resumed from {session.durable_bytes}", flush=True)
        if session.durable_bytes == size:
            break
        try:
            cut = cut_after if attempt == 0 else None
            if send_parts(pb, uploads, session, path, session.durable_bytes, cut) == size:
                break
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE:
                raise
            print(f"stream broke off ({e.code().name}); resuming", flush=True)
        time.sleep(backoff)
        backoff = min(backoff * 2, 8)
    digest = sha256_of(path, 0, size)
    stored = uploads.CompleteUpload(
        pb.CompleteUploadRequest(upload_id=session.upload_id, size=size, expected_sha256=digest),
        timeout=CALL_DEADLINE,
    )
    if stored.sha256 != digest or stored.size != size:
        sys.exit(f"stored {stored.size} bytes hashing {stored.sha256}, sent {size} hashing {digest}")
    print(f"stored {bucket}/{key}: {size} bytes, sha256 {stored.sha256}", flush=True)
    return digest


def sha256_of(path, offset, length):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(MIB, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def read(pb, rpc, bucket, key, consume, offset=None, length=None):
    """Streams a Get into `consume`, checking that its first message says
    which range follows and that exactly that many bytes came."""
    objects = rpc.ObjectsStub(CHANNEL)
    request = pb.GetRequest(bucket=bucket, key=key)
    if offset is not None:
        request.offset = offset
    if length is not None:
        request.length = length
    stream = objects.Get(request, timeout=600)
    first = next(stream)
    if not first.HasField("info"):
        sys.exit("the first message of a Get carries the object's info")
    received = 0
    for message in stream:
        consume(message.data)
        received += len(message.data)
    if received != first.range.length:
        sys.exit(f"got {received} bytes, the first message said {first.range.length}")
    return first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("object", help="BUCKET/KEY")
    parser.add_argument("--cut-after", type=int, default=None)
    args = parser.parse_args()
    bucket, key = args.object.split("/", 1)
    pb, rpc = stubs()
    global CHANNEL
    CHANNEL = connect()
    digest = upload(pb, rpc, args.file, bucket, key, args.cut_after)

    size = os.path.getsize(args.file)
    offset, length = size // 3, min(5 * MIB, size - size // 3)
    part = bytearray()
    first = read(pb, rpc, bucket, key, part.extend, offset, length)
    with open(args.file, "rb") as f:
        f.seek(offset)
        expected = f.read(length)
    if bytes(part) != expected or first.range.offset != offset:
        sys.exit("the range read back differs from the file")
    print(f"range [{offset}, {offset + length}) ok", flush=True)

    whole = hashlib.sha256()
    first = read(pb, rpc, bucket, key, whole.update)
    actual = whole.hexdigest()
    if actual != digest or first.info.sha256 != digest:
        sys.exit(f"sha256 mismatch: file {digest}, read back {actual}, stored {first.info.sha256}")
    print(f"sha256 ok: {actual}", flush=True)


CHANNEL = None

if __name__ == "__main__":
    main()
