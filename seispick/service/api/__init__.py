"""The HTTP API: app factory (``app.create_app``), routers, dependencies, request bodies, responses.

``bodies`` reads requests through ``seispick.picking.waveforms`` (what ``seispick pick`` reads, and 4xx answers
that say what anything else looks like); ``responses`` turns results and published records into JSON, CSV and
QuakeML with the picks' own ids and probabilities as numbers.
"""
