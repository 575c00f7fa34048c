"""The error hierarchy: classes chosen by etcd message first, then by gRPC code (no server needed)."""
import grpc

import pier
from pier.errors import error_for, status_code


def test_etcd_messages_pick_specific_classes():
    error = error_for(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert isinstance(error, pier.CompactedError) and isinstance(error, pier.OutOfRangeError)
    assert isinstance(error, pier.PierError) and error.code == grpc.StatusCode.OUT_OF_RANGE
    assert isinstance(error_for(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
                      pier.LeaseNotFoundError)
    assert isinstance(error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"),
                      pier.NoSpaceError)


def test_other_errors_follow_their_code():
    error = error_for(grpc.StatusCode.FAILED_PRECONDITION, "member m1 is not in group g at generation 3")
    assert type(error) is pier.FailedPreconditionError
    assert str(error) == "FAILED_PRECONDITION: member m1 is not in group g at generation 3"
    assert isinstance(error_for(grpc.StatusCode.UNAVAILABLE, "x"), pier.UnavailableError)


def test_numeric_codes_from_messages():
    assert status_code(9) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(12345) == grpc.StatusCode.UNKNOWN
