"""The models contract, shared by the CLI, evaluation, the HTTP API and the stream (no train/serve skew).

- ``card``, ``registry``, ``runtime``: model cards, shipped and user models, onnxruntime sessions.
- ``io``: the one input path: bytes or files to an ObsPy Stream (compression and format sniffed, the format
  named to ObsPy), with messages that say what unreadable input looks like.
- ``grouping``, ``notes``: streams to per-instrument segments on the absolute sample grid; notes on missing
  components, gaps, resampling, constant and clipped data (worded the same for batch and stream).
- ``preprocess``, ``windowing``, ``stacking``, ``trigger``, ``segment``, ``records``, ``annotate``: the one
  picking core, driven with whole segments (``annotate``) or record by record (``records``).
- ``picks``: ``Pick`` and ``Detection`` with their deterministic ids; ``formats``: CSV, JSON, QuakeML;
  ``detect``: detector models.

May import numpy, ObsPy and onnxruntime; never torch, ``seispick.training``, the service or the CLI, so the
service and the CLI run from an install without torch.
"""
