"""Offline PyTorch package: PhaseNet and ConvNetQuake, datasets, training, evaluation and ONNX export.

May import ``seispick.models`` (cards, the picking core, formats: evaluation picks exactly as serving does)
and torch; never the service or the CLI. Only the CLI's training commands import it, lazily.
"""
