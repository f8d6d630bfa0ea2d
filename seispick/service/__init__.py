"""The seispick service, by concern (layers: ``.importlinter``).

- ``settings``: the one configuration schema (pydantic-settings, ``SEISPICK_*``).
- ``batcher``, ``app_metrics``, ``errors``: the micro-batcher shared by HTTP and the stream, the app's
  Prometheus metrics, and the errors the service raises (each with its HTTP status).
- ``api/``: the FastAPI app factory, routers, dependencies, request bodies and responses.
- ``ingest/``: watched folders and file replay, and the manager of every source (the SeedLink client lives
  in ``seispick.seedlink.client``).
- ``stream/``: the real-time job: per-instrument picking through the batcher, station states, live events.
- ``publish/``: the publisher (Redis Streams + pub/sub, in-process fan-out), its outbox, the published schema.
"""
