"""Publication of picks and detections: Redis Streams + pub/sub, in-process fan-out, a lossless outbox.

``pick_schema.json`` is the published schema. May import: seispick.models, redis; nothing else of the service.
"""
