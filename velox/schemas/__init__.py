"""Wire formats: one module per format, each with its JSON Schema file beside it."""
