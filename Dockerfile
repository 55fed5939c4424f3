# The velox services' image: the package, Java for Spark (the retrain controller), the connector jars.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY velox ./velox
RUN pip install --no-cache-dir . && velox jars
ENV VELOX_DATA=/data VELOX_BOOTSTRAP=kafka:9092
