"""Experiments run through the real pipeline (a throwaway broker, a worker, Spark): ``accuracy``
is Velox's accuracy experiment, ``velox evaluate``."""
