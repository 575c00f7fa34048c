"""Topic administration against Pier: create, list, describe, alter configs, delete, errors."""
import pytest

import pier


def test_topic_lifecycle(pier_client, prefix):
    admin = pier_client.admin
    created = admin.create_topic(prefix, partitions=3, configs={"retention.ms": 60000})
    assert created.name == prefix and [p.partition for p in created.partitions] == [0, 1, 2]
    assert created.configs["retention.ms"] == "60000"
    assert created.configs["cleanup.policy"] == "delete"  # every config is listed, defaults too
    assert pier.TopicSummary(prefix, 3) in admin.list_topics()
    described = admin.describe_topic(prefix)
    assert all(p.log_start_offset == 0 and p.log_end_offset == 0 for p in described.partitions)
    altered = admin.alter_config(prefix, set={"cleanup.policy": "compact"}, remove=["retention.ms"])
    assert altered.configs["cleanup.policy"] == "compact"
    assert altered.configs["retention.ms"] == "604800000"
    admin.delete_topic(prefix)
    assert prefix not in [t.name for t in admin.list_topics()]
    with pytest.raises(pier.NotFoundError):
        admin.describe_topic(prefix)


def test_admin_errors_name_the_problem(pier_client, prefix):
    admin = pier_client.admin
    admin.create_topic(prefix)
    with pytest.raises(pier.AlreadyExistsError) as err:
        admin.create_topic(prefix)
    assert err.value.code.name == "ALREADY_EXISTS" and prefix in err.value.message
    with pytest.raises(pier.InvalidArgumentError):
        admin.create_topic(f"{prefix}-bad", configs={"no.such.config": "1"})
    with pytest.raises(pier.InvalidArgumentError):
        admin.create_topic("not a valid/name")
    with pytest.raises(pier.NotFoundError):
        admin.delete_topic(f"{prefix}-missing")
    admin.delete_topic(prefix)
