"""The HTTP API: app factory (``app.create_app``), routers, dependencies, request decoding, responses.

May import: the rest of the service (settings, batcher, metrics, errors, the stream runtime, the publisher)
and seispick.models; not the ingest sources' internals.
"""
