"""Reproducible builds of the shipped models (``python -m seispick.training.recipes``)."""
