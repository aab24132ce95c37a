"""Inference service: media fetch and probe, the lip-sync engine, encoding, result upload."""
