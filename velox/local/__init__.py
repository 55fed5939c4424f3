"""Running Velox's parts on this machine: a real Kafka broker (or a local cluster) from the
official jars, its throwaway credentials, the jars themselves from Maven Central, and the
loader that produces a file of feedback to ``observations``."""
