"""HTTP routers by concern: picks, models, health, metrics.

Versioned routers carry their prefix themselves, so ``route.path`` (the metrics label) is the full template.
"""

API_PREFIX = "/v1"
