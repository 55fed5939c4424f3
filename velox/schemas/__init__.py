"""Wire formats: one module per format. The one that other people's producers write, the observation,
has its JSON Schema file beside its module (``observation.schema.json``)."""
