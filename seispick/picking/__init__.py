"""The one picking core, shared by the CLI, evaluation, the HTTP API and the stream (no train/serve skew).

- ``waveforms``: the one input path: bytes or files to an ObsPy Stream (compression and format sniffed, the
  format named to ObsPy), with messages that say what unreadable input looks like.
- ``grouping``, ``notes``: streams to per-instrument segments on the absolute sample grid; notes on missing
  components, gaps, resampling, constant and clipped data (worded the same for batch and stream).
- ``preprocess``, ``windowing``, ``stacking``, ``trigger``, ``segment``: windows on the absolute time grid,
  normalisation, stacking, SeisBench's trigger and the per-segment picker.
- ``annotate`` (whole segments), ``incremental`` (record by record): the two drivers of the same core.
- ``results``: ``Pick`` and ``Detection`` with their deterministic ids; ``formats``: CSV, JSON, QuakeML;
  ``detect``: detector models.
"""
