"""Velox: personalized predictions in milliseconds, kept fresh from a Kafka stream of feedback."""

__version__ = "0.1.0"
