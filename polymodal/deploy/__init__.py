"""Deployment: ONNX / TorchScript export with a parity check (``export``), a numpy + onnxruntime
runtime (``runtime``, ``preprocess``), the HTTP service and its web page (``server``, ``requests``,
``microbatch``, ``static/``), and resumable batch prediction (``batch``). Importing this package
imports nothing heavy; ``runtime`` never imports torch."""
