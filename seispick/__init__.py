"""seispick: real-time seismic phase picking with PhaseNet and ConvNetQuake in ONNX.

Folders and what they may import:
- ``models/``   (``seispick.models``): the contract between training and serving; numpy/obspy/onnxruntime only.
- ``training/`` (``seispick.training``): offline PyTorch code; may import ``seispick.models``.
- ``service/``  (``seispick.service``): the FastAPI service; may import ``seispick.models``, never torch or training.
- ``cli/``      (``seispick.cli``): the ``seispick`` command; imports training lazily, only for training commands.
"""

__version__ = "0.1.0"
