"""Models: cards (``card``), shipped and user models (``registry``), inference sessions (``inference``:
onnxruntime, OpenVINO), and the shipped weights with their cards and licences (one folder per model).

The picking core that runs them lives in ``seispick.picking``; layers: ``.importlinter``.
"""
