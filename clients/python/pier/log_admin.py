# Log administration: topics, their configs, offsets and consumer groups (`client.admin`).
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Tuple

from pier._proto.pier.log.v1 import log_pb2

if TYPE_CHECKING:
    from pier.client import Client


@dataclass(frozen=True)
class TopicSummary:
    name: str
    partitions: int


@dataclass(frozen=True)
class PartitionInfo:
    """A partition's extent: offsets in [log_start_offset, log_end_offset) are stored, and
    everything below log_end_offset (the high watermark) is durable."""
    partition: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int
    segments: int


@dataclass
class TopicDescription:
    name: str
    configs: Dict[str, str]
    partitions: List[PartitionInfo]

    @classmethod
    def from_pb(cls, t: log_pb2.TopicDescription) -> "TopicDescription":
        parts = [PartitionInfo(p.partition, p.log_start_offset, p.log_end_offset, p.size_bytes, p.segments)
                 for p in t.partitions]
        return cls(t.topic, dict(t.configs), sorted(parts, key=lambda p: p.partition))


@dataclass(frozen=True)
class GroupSummary:
    group_id: str
    state: str
    members: int
    generation: int


@dataclass
class GroupMember:
    member_id: str
    client_id: str
    assignment: Dict[str, List[int]]


@dataclass
class GroupDescription:
    group_id: str
    state: str
    generation: int
    assignor: str
    topics: List[str]
    members: List[GroupMember] = field(default_factory=list)


def assignment_dict(assignment: Iterable[log_pb2.TopicPartitions]) -> Dict[str, List[int]]:
    return {tp.topic: sorted(tp.partitions) for tp in assignment}


_SPECS = {"latest": log_pb2.OFFSET_SPEC_LATEST, "earliest": log_pb2.OFFSET_SPEC_EARLIEST}
_ASSIGNORS = {log_pb2.ASSIGNOR_RANGE: "range", log_pb2.ASSIGNOR_ROUND_ROBIN: "round_robin",
              log_pb2.ASSIGNOR_STICKY: "sticky"}


class LogAdmin:
    def __init__(self, client: "Client"):
        self._client = client

    def _call(self, name: str, request, timeout: Optional[float]):
        return self._client.call(getattr(self._client.log_stub, name), request, timeout)

    def create_topic(self, name: str, partitions: int = 1, configs: Optional[Mapping[str, str]] = None,
                     timeout: Optional[float] = None) -> TopicDescription:
        """Creates a topic; AlreadyExistsError if it exists. Config values are strings, as in Kafka."""
        request = log_pb2.CreateTopicRequest(topic=name, partitions=partitions,
                                             configs={k: str(v) for k, v in (configs or {}).items()})
        return TopicDescription.from_pb(self._call("CreateTopic", request, timeout).topic)

    def delete_topic(self, name: str, timeout: Optional[float] = None) -> None:
        self._call("DeleteTopic", log_pb2.DeleteTopicRequest(topic=name), timeout)

    def list_topics(self, timeout: Optional[float] = None) -> List[TopicSummary]:
        reply = self._call("ListTopics", log_pb2.ListTopicsRequest(), timeout)
        return sorted((TopicSummary(t.topic, t.partitions) for t in reply.topics), key=lambda t: t.name)

    def describe_topic(self, name: str, timeout: Optional[float] = None) -> TopicDescription:
        return TopicDescription.from_pb(self._call("DescribeTopic", log_pb2.DescribeTopicRequest(topic=name),
                                                   timeout).topic)

    def alter_config(self, name: str, set: Optional[Mapping[str, str]] = None, remove: Iterable[str] = (),
                     timeout: Optional[float] = None) -> TopicDescription:
        """Sets and resets (to default) topic configs; returns the topic with every config after."""
        request = log_pb2.AlterTopicConfigRequest(topic=name, set={k: str(v) for k, v in (set or {}).items()},
                                                  remove=list(remove))
        return TopicDescription.from_pb(self._call("AlterTopicConfig", request, timeout).topic)

    def list_offsets(self, topic: str, partitions: Iterable[int] = (), spec: str = "latest",
                     timestamp_ms: int = 0, timeout: Optional[float] = None) -> Dict[int, int]:
        """{partition: offset} for spec "latest" (the next offset), "earliest", or "timestamp"
        (the first record at or after timestamp_ms)."""
        kind = log_pb2.OFFSET_SPEC_TIMESTAMP if spec == "timestamp" else _SPECS[spec]
        request = log_pb2.ListOffsetsRequest(topic=topic, partitions=list(partitions), spec=kind,
                                             timestamp_ms=timestamp_ms)
        return {o.partition: o.offset for o in self._call("ListOffsets", request, timeout).offsets}

    def list_groups(self, timeout: Optional[float] = None) -> List[GroupSummary]:
        reply = self._call("ListGroups", log_pb2.ListGroupsRequest(), timeout)
        return [GroupSummary(g.group_id, g.state, g.members, g.generation) for g in reply.groups]

    def describe_group(self, group_id: str, timeout: Optional[float] = None) -> GroupDescription:
        r = self._call("DescribeGroup", log_pb2.DescribeGroupRequest(group_id=group_id), timeout)
        members = [GroupMember(m.member_id, m.client_id, assignment_dict(m.assignment)) for m in r.members]
        return GroupDescription(r.group_id, r.state, r.generation, _ASSIGNORS.get(r.assignor, str(r.assignor)),
                                list(r.topics), members)

    def committed_offsets(self, group_id: str, partitions: Optional[Mapping[str, Iterable[int]]] = None,
                          timeout: Optional[float] = None) -> Dict[Tuple[str, int], int]:
        """{(topic, partition): next offset to consume} committed by the group."""
        request = log_pb2.FetchOffsetsRequest(group_id=group_id, partitions=[
            log_pb2.TopicPartitions(topic=t, partitions=list(p)) for t, p in (partitions or {}).items()])
        return {(o.topic, o.partition): o.offset for o in self._call("FetchOffsets", request, timeout).offsets}
