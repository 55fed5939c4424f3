from velox.local import jars
from velox.settings import Settings


def test_spark_kafka_jar_set_keeps_only_what_pyspark_lacks() -> None:
    fetched = jars.fetch(jars.SPARK_KAFKA, Settings.from_env().cache)
    names = {path.name.rsplit("-", 1)[0] for path in fetched}
    assert names == set(jars.SPARK_KAFKA.keep)


def test_kafka_broker_jar_set_has_the_broker_and_its_logging() -> None:
    fetched = {path.name for path in jars.fetch(jars.KAFKA_BROKER, Settings.from_env().cache)}
    assert "kafka_2.13-4.1.1.jar" in fetched
    assert any(name.startswith("log4j-slf4j2-impl-") for name in fetched)
    assert any(name.startswith("slf4j-api-2.") for name in fetched)
