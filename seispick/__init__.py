"""seispick: real-time seismic phase picking with PhaseNet and ConvNetQuake in ONNX.

The packages, top to bottom (a package imports only those below it; the rule is declared once, as
import-linter contracts in ``.importlinter``, and checked by ``lint-imports`` in the test command):

- ``cli/``: the ``seispick`` command (training loaded lazily, so ``pick`` and ``serve`` run without torch).
- ``service/``: the FastAPI service by concern (``api``, ``stream``, ``ingest``, ``publish``).
- ``training/``: offline PyTorch: networks, data, fitting, evaluation, export.
- ``events/``: association of picks into located events, QuakeML events, magnitudes.
- ``replay/``: ``seispick replay``, a SeedLink server replaying archives.
- ``picking/``: the one picking core (windows, stacking, triggers, segments, incremental), waveform input and
  output formats, shared by the CLI, evaluation, HTTP and the stream.
- ``models/``: model cards, the registry of shipped and user models, inference sessions, the shipped weights.
- ``seedlink/``: the SeedLink protocol, its client and the server's dialects.
- ``feed``: the base of every ingest source (a feed of traces).
- ``miniseed/``: miniSEED records: decoding to traces, packing, miniSEED 3.
"""

__version__ = "0.1.0"
