# Pier's Python client: the etcd v3 key-value API and Pier's log, over one gRPC channel.
from pier.client import Client
from pier.async_consumer import AsyncConsumer
from pier.consumer import Consumer, ConsumerRecord
from pier.errors import (AlreadyExistsError, CompactedError, DeadlineExceededError, DuplicateKeyError,
                         EmptyKeyError, FailedPreconditionError, FutureRevisionError, InvalidArgumentError,
                         KeyNotFoundError, LeaseExistsError, LeaseNotFoundError, NoSpaceError, NotFoundError,
                         OutOfRangeError, PierError, RequestTooLargeError, ResourceExhaustedError, TooManyOpsError,
                         UnavailableError, UnimplementedError)
from pier.kv import (CreateRevision, DeleteResult, KeyValue, LeaseId, ModRevision, PutResult, RangeResult, Txn,
                     TxnResult, Value, Version, ops, prefix_range_end)
from pier.lease import KeepAlive, Lease, LeaseTTL
from pier.log_admin import PartitionInfo, TopicDescription, TopicSummary
from pier.producer import Producer, RecordMetadata
from pier.watch import Event, Watch

__all__ = [
    "Client", "Producer", "RecordMetadata", "Consumer", "AsyncConsumer", "ConsumerRecord",
    "KeyValue", "RangeResult", "PutResult", "DeleteResult", "TxnResult", "Txn", "ops",
    "Value", "Version", "CreateRevision", "ModRevision", "LeaseId", "prefix_range_end",
    "Lease", "LeaseTTL", "KeepAlive", "Event", "Watch", "TopicDescription", "TopicSummary", "PartitionInfo",
    "PierError", "CompactedError", "FutureRevisionError", "LeaseNotFoundError", "LeaseExistsError",
    "KeyNotFoundError", "EmptyKeyError", "DuplicateKeyError", "TooManyOpsError", "RequestTooLargeError",
    "NoSpaceError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "FailedPreconditionError",
    "OutOfRangeError", "ResourceExhaustedError", "DeadlineExceededError", "UnavailableError", "UnimplementedError",
]
