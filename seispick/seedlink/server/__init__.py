"""The SeedLink side of the replay server: ``session`` (one connection), ``dialect`` with ``dialect_v3`` and
``dialect_v4`` (commands, replies, framing and INFO per protocol version), ``requests`` (what a client asked
for and where its stream starts), ``ring`` (the replay clock and per-station packet buffers) and ``info``
(HELLO, INFO XML and JSON). Protocol pieces shared with the client: ``seispick.seedlink.protocol`` and
``seispick.seedlink.packet_v4``; the server itself: ``seispick.replay.server``.
"""
