# The PierError hierarchy: every failed call surfaces as one of these, carrying its gRPC code.
from __future__ import annotations

from typing import Optional

import grpc


class PierError(Exception):
    """A call failed. `code` is the grpc.StatusCode, `message` the server's status message."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else grpc.StatusCode.UNKNOWN

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class CancelledError(PierError): pass
class UnknownError(PierError): pass
class InvalidArgumentError(PierError): pass
class DeadlineExceededError(PierError): pass
class NotFoundError(PierError): pass
class AlreadyExistsError(PierError): pass
class PermissionDeniedError(PierError): pass
class ResourceExhaustedError(PierError): pass
class FailedPreconditionError(PierError): pass
class AbortedError(PierError): pass
class OutOfRangeError(PierError): pass
class UnimplementedError(PierError): pass
class InternalError(PierError): pass
class UnavailableError(PierError): pass
class DataLossError(PierError): pass
class UnauthenticatedError(PierError): pass


# etcd's clients tell errors apart by message text (the gRPC code alone is ambiguous), so the
# subclasses below are chosen by message and also derive from the class of their usual code.
class CompactedError(OutOfRangeError):
    """The revision asked for has been compacted away. `compact_revision` is set when known
    (a watch reports it; a range only says so in the message)."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None, compact_revision: int = 0):
        super().__init__(message, code if code is not None else grpc.StatusCode.OUT_OF_RANGE)
        self.compact_revision = compact_revision


class FutureRevisionError(OutOfRangeError): pass
class LeaseNotFoundError(NotFoundError): pass
class LeaseExistsError(FailedPreconditionError): pass
class KeyNotFoundError(InvalidArgumentError): pass
class EmptyKeyError(InvalidArgumentError): pass
class DuplicateKeyError(InvalidArgumentError): pass
class TooManyOpsError(InvalidArgumentError): pass
class RequestTooLargeError(InvalidArgumentError): pass
class NoSpaceError(ResourceExhaustedError): pass


_BY_CODE = {
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNKNOWN: UnknownError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}

_BY_MESSAGE = {
    "etcdserver: mvcc: required revision has been compacted": CompactedError,
    "mvcc: required revision has been compacted": CompactedError,
    "etcdserver: mvcc: required revision is a future revision": FutureRevisionError,
    "mvcc: required revision is a future revision": FutureRevisionError,
    "etcdserver: requested lease not found": LeaseNotFoundError,
    "etcdserver: lease already exists": LeaseExistsError,
    "etcdserver: key not found": KeyNotFoundError,
    "etcdserver: key is not provided": EmptyKeyError,
    "etcdserver: duplicate key given in txn request": DuplicateKeyError,
    "etcdserver: too many operations in txn request": TooManyOpsError,
    "etcdserver: request is too large": RequestTooLargeError,
    "etcdserver: mvcc: database space exceeded": NoSpaceError,
}

_BY_CODE_NAME = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode for a numeric code carried in a message (e.g. ProduceResult.error_code)."""
    return _BY_CODE_NAME.get(number, grpc.StatusCode.UNKNOWN)


def error_for(code: grpc.StatusCode, message: str) -> PierError:
    cls = _BY_MESSAGE.get(message) or _BY_CODE.get(code, PierError)
    return cls(message, code)


def from_rpc_error(error: grpc.RpcError) -> PierError:
    """Turns a grpc.RpcError (sync or asyncio) into the matching PierError."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "")
