"""Model containers (Clipper's word): a model from any Python framework, served beside the split model."""
