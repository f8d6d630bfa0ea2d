"""seispick: real-time seismic phase picking with PhaseNet and ConvNetQuake in ONNX.

Packages and what they may import (the layers are import-linter contracts in ``.importlinter``, checked by
``lint-imports`` in the test command):

- ``models/``: the contract between training and serving: model cards and ONNX sessions, the one input path
  (``io``), grouping and notes, the one picking core (windowing, stacking, triggers) for batch and stream,
  picks with their ids, output formats. numpy, ObsPy, onnxruntime; never torch, training, the service or CLI.
- ``training/``: offline PyTorch code (models, datasets, training, evaluation, export); may import
  ``seispick.models`` and torch, never the service or the CLI.
- ``events/``: association of picks into located events, QuakeML events, magnitudes; may import
  ``seispick.models``, never the service, training or torch.
- ``service/``: the FastAPI service by concern (``api``, ``ingest``, ``stream``, ``publish``); may import
  ``seispick.models``, ``seispick.seedlink``, ``seispick.replay`` (the demo), never torch or training.
- ``seedlink/``: the SeedLink protocol and 512-byte miniSEED records; imports nothing of seispick.
- ``replay/``: ``seispick replay``, a SeedLink server for archives (a tool, not part of the service); may
  import ``seispick.seedlink`` only.
- ``cli/``: the ``seispick`` command; may import everything, training lazily (``cli/lazy.py``).
"""

__version__ = "0.1.0"
