"""S3 throughput of a tresor cluster with boto3, as S3 tools drive it.

    source DIR/env                      # a `tresor-node dev` cluster's env file
    python3 ops/bench/s3_bench.py [--size-mib 64] [--objects 4] [--big-gib 0]

Puts then gets `--objects` objects of `--size-mib` per client with 1 and
with 4 clients at once (one boto3 client per thread, as the transfer tools
use them) and prints MB/s per row. Run `tresor-ops bench --endpoint ...
--big-object-mib 0` against the same cluster for the gRPC rows of the same
run. With `--big-gib N`, also one PutObject and one multipart upload
(`upload_fileobj`, 64 MiB parts, 4 at once) of N GiB, streamed from a
generator, while the largest node RSS is sampled (every tresor-node
process on this machine).
"""

import argparse
import hashlib
import os
import threading
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1 << 20


def client():
    return boto3.client(
        "s3",
        config=Config(
            retries={"max_attempts": 3},
            s3={"addressing_style": "path"},
            max_pool_connections=16,
        ),
    )


def node_rss_mib():
    """The largest RSS of a tresor-node process, in MiB."""
    best = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"tresor-node" not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        best = max(best, int(line.split()[1]) // 1024)
        except OSError:
            continue
    return best


class Sampler:
    """The peak of `node_rss_mib` while it runs."""

    def __init__(self):
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, node_rss_mib())
            self.stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


class Generated:
    """`size` pseudo-random bytes, made as they are read (a file object)."""

    def __init__(self, size):
        self.size, self.pos = size, 0
        self.block = hashlib.sha512(b"tresor").digest() * (MIB // 64)

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            at = (self.pos + len(out)) % len(self.block)
            out += self.block[at : at + n - len(out)]
        self.pos += n
        return bytes(out)

    def seek(self, pos, whence=0):
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self):
        return self.pos

    def __len__(self):
        return self.size


def timed(clients, work):
    """Runs work(i) on `clients` threads; seconds taken."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bucket", default="s3bench")
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--objects", type=int, default=4, help="per client")
    p.add_argument("--big-gib", type=int, default=0)
    a = p.parse_args()
    s3 = client()
    try:
        s3.create_bucket(Bucket=a.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    data = os.urandom(a.size_mib * MIB)
    run = hashlib.sha256(os.urandom(8)).hexdigest()[:8]
    print(f"{'op':<6} {'MiB':>5} {'clients':>7} {'MB/s':>8}")
    for clients in (1, 4):
        keys = [[f"{run}/{clients}/{c}/{i}" for i in range(a.objects)] for c in range(clients)]
        total = a.size_mib * MIB * clients * a.objects

        def put(c):
            mine = client()
            for key in keys[c]:
                mine.put_object(Bucket=a.bucket, Key=key, Body=data)

        def get(c):
            mine = client()
            for key in keys[c]:
                body = mine.get_object(Bucket=a.bucket, Key=key)["Body"]
                while body.read(8 * MIB):
                    pass

        for op, work in (("PUT", put), ("GET", get)):
            secs = timed(clients, work)
            print(f"{op:<6} {a.size_mib:>5} {clients:>7} {total / secs / 1e6:>8.1f}", flush=True)
    if a.big_gib:
        size = a.big_gib << 30
        before = node_rss_mib()
        with Sampler() as sampled:
            start = time.monotonic()
            s3.put_object(Bucket=a.bucket, Key=f"{run}/big-put", Body=Generated(size), ContentLength=size)
            put_secs = time.monotonic() - start
        print(f"PutObject of {a.big_gib} GiB: {size / put_secs / 1e6:.0f} MB/s; largest node RSS {sampled.peak} MiB (before {before} MiB)")
        config = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=4)
        with Sampler() as sampled:
            start = time.monotonic()
            s3.upload_fileobj(Generated(size), a.bucket, f"{run}/big-multipart", Config=config)
            mp_secs = time.monotonic() - start
        print(f"multipart upload of {a.big_gib} GiB: {size / mp_secs / 1e6:.0f} MB/s; largest node RSS {sampled.peak} MiB")


if __name__ == "__main__":
    main()
