"""Channel trees in an S3-compatible object store: a typed bucket and the writer lease.

Built on obstore (the Python binding of Apache Arrow's Rust `object_store`): conditional
PUTs, SHA-256 checksums on every upload and part, multipart uploads, ranged reads, retries
with backoff, and an import time of a few milliseconds (boto3 needs about 0.3 s to import
and build a client, more than a whole no-op `mirror sync` may take).

A tree store over one Bucket whose prefix is the tree's root (keys `<channel>/<subdir>/<file>`):

    stat(key)              -> bucket.head(key): size and etag (the version token), or None
    list_dir(prefix)       -> bucket.list_dir(prefix).objects (and .folders)
    walk(prefix)           -> bucket.walk(prefix)
    read_bytes(key)        -> bucket.get_bytes(key), or get_object(key) to keep the etag
    open_read(key)         -> bucket.open_read(key) (seekable) or bucket.iter_bytes(key)
    read_range(key, s, e)  -> bucket.get_range(key, s, e) (get_suffix for a zip's tail)
    write_bytes(key, data, only_if_changed)
                           -> bucket.put_if_changed(key, data, last_etag=<etag last seen>)
    install_file(temp, key, sha256, never_overwrite)
                           -> bucket.put_file(key, temp, sha256_hex=sha256,
                                              create_only=never_overwrite)
    delete(key)            -> bucket.delete(key) / bucket.delete_many(keys)

and one writer at a time: `with Lease(bucket):` ... `lease.check()` before each publish step.
"""

from mirror.adapters.objectstore.bucket import Bucket
from mirror.adapters.objectstore.lease import Lease, LeaseKeeper, LeaseTiming
from mirror.adapters.objectstore.lease_record import LEASE_KEY, LeaseRecord
from mirror.adapters.objectstore.objects import Listing, ObjectStat
from mirror.adapters.objectstore.retry import RetryPolicy
from mirror.core.bucket_location import Addressing, BucketLocation

__all__ = [
    "LEASE_KEY",
    "Addressing",
    "Bucket",
    "BucketLocation",
    "Lease",
    "LeaseKeeper",
    "LeaseRecord",
    "LeaseTiming",
    "Listing",
    "ObjectStat",
    "RetryPolicy",
]
