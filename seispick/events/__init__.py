"""Events: picks associated into located events (PyOcto), QuakeML events, local magnitudes, live association.

A layer of its own above ``seispick.models``: it may import ``seispick.models``, ObsPy, PyOcto (and redis-py
for following a pick stream), never the service, the training code or torch (``.importlinter`` checks it).
The CLI (``seispick associate``) and the service wire it to files, Redis and HTTP.
"""
