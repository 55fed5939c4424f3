# The image of every service in docker-compose.yml: the velox package, Java (the broker and
# Spark), the broker's and Spark's Kafka connector jars, Prometheus (Debian's) and its configuration.
# One image, one process per container.
# debian:bookworm-slim comes from the registry where one is reachable; docker/base-image.sh
# makes it on a machine without one.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv openjdk-17-jre-headless maven curl \
       prometheus \
    && rm -rf /var/lib/apt/lists/*
# pip's own certificate list lacks any authority the machine added; the system's has them all.
ENV PATH=/opt/velox/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/velox && pip install --quiet --upgrade pip
WORKDIR /app
# The dependencies and the jars first, in layers of their own: a change to the code fetches
# neither again. Only what fetching the jars imports is copied for it.
COPY pyproject.toml README.md ./
COPY velox/__init__.py velox/errors.py velox/
COPY velox/local/__init__.py velox/local/
COPY velox/local/jars velox/local/jars
RUN pip install --quiet . && python -c "from pathlib import Path; from velox.local import jars; \
    [jars.fetch(s, Path.home() / '.cache' / 'velox') for s in (jars.KAFKA_BROKER, jars.SPARK_KAFKA)]"
COPY docker/prometheus.yml docker/prometheus.yml
COPY velox ./velox
RUN pip install --quiet --no-deps . && velox jars
ENV VELOX_DATA=/data VELOX_BOOTSTRAP=kafka:9092
