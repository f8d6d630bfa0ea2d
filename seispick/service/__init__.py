"""The seispick service, by concern. Never imports torch or training.

- ``settings``: the one pydantic-settings class (``SEISPICK_*``) everything is configured from.
- ``batcher``, ``metrics``, ``errors``: the micro-batcher shared by HTTP and the stream, the service's
  Prometheus metrics, and the errors the service raises (each with its HTTP status).
- ``api/``: the FastAPI app factory, routers, dependencies, request decoding and responses.
- ``ingest/``: data sources (SeedLink client, watched folders, file replay) and record decoding.
- ``stream/``: the real-time runtime: per-instrument picking through the batcher, station states, stream metrics.
- ``publish/``: the publisher (Redis Streams + pub/sub, in-process fan-out), its outbox, the published schema.

May import: seispick.models, seispick.seedlink, seispick.replay (the demo), ObsPy, FastAPI, redis.
Within the service: ``api`` may use ``stream``'s runtime but not ``ingest`` internals; ``ingest``, ``stream``
and ``publish`` never import ``api``.
"""
