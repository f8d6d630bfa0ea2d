"""Publication of picks and detections: Redis Streams + pub/sub, in-process fan-out, a lossless outbox.

Records carry the items' own ids (``Pick.id``, ``Detection.id``) and string fields (Redis hashes have no
numbers; the API's JSON answers turn them back). ``pick_schema.json`` is the published schema.
"""
