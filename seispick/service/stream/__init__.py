"""Real-time picking: the runtime wiring sources -> per-instrument pickers -> publisher, station states, metrics.

May import: seispick.models (the picking core), service.ingest, service.publish, service.batcher,
seispick.replay (demo mode); never the API.
"""
