"""Kafka plumbing, one concern a module: how clients are configured (``client_config``), made
(``clients``), where partitions and groups are (``positions``), and topics created
(``topic_admin``). The compacted topics read as tables are the control plane's
(``velox.control.compacted``)."""
