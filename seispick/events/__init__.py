"""Events: picks associated into located events (PyOcto), QuakeML events, local magnitudes, live association.

The CLI (``seispick associate``) and the service wire it to files, Redis and HTTP; layers: ``.importlinter``.
"""
