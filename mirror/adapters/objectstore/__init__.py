"""Channel trees in an S3-compatible object store: a typed bucket and the writer lease.

Built on obstore (the Python binding of Apache Arrow's Rust `object_store`): conditional
PUTs, SHA-256 checksums on every upload and part, multipart uploads, ranged reads, retries
with backoff, and an import time of a few milliseconds (boto3 needs about 0.3 s to import
and build a client, more than a whole no-op `mirror sync` may take).
"""

from mirror.adapters.objectstore.bucket import Bucket
from mirror.adapters.objectstore.lease import Lease, LeaseKeeper, LeaseTiming
from mirror.adapters.objectstore.lease_record import LEASE_KEY, LeaseRecord
from mirror.adapters.objectstore.location import Addressing, BucketLocation
from mirror.adapters.objectstore.objects import Listing, ObjectStat
from mirror.adapters.objectstore.retry import RetryPolicy

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
