"""Client properties read the Java way, and named the Java way for Spark's Kafka source."""

from __future__ import annotations

from pathlib import Path

import pytest

from velox.errors import ConfigError
from velox.kafka.client_config import java_options, properties
from velox.settings import Settings


def test_client_properties_are_read_the_java_way_and_named_the_java_way_for_spark(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# a comment\n! another\n\nsecurity.protocol=SASL_SSL\nsasl.mechanism: SCRAM-SHA-512\n"
                    "sasl.username velox\nsasl.password=p=s\"s:w\nssl.ca.location = /x/ca.pem\nclient.id\n")
    assert properties(path) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                "sasl.username": "velox", "sasl.password": 'p=s"s:w', "ssl.ca.location": "/x/ca.pem",
                                "client.id": ""}
    assert java_options(Settings(kafka_config=path)) == {
        "security.protocol": "SASL_SSL", "client.id": "", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="velox" '
                            'password="p=s\\"s:w";',
        "ssl.truststore.type": "PEM", "ssl.truststore.location": "/x/ca.pem",
    }


def test_a_missing_client_properties_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VELOX_KAFKA_CONFIG .*nowhere.properties cannot be read"):
        properties(tmp_path / "nowhere.properties")
