"""Data layer: manifests, per-modality preprocessing, encoding into arrays, the torch Dataset."""
