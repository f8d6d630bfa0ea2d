"""The SeedLink client the service ingests with: ``source`` (reconnect, resume, station listing), ``commands``
(handshake commands for 3.1 or 4.0), ``connection`` (replies, packet framing, CAT and INFO listings) and
``source_config`` (its settings). Protocol pieces shared with the server: ``seispick.seedlink.protocol`` and
``seispick.seedlink.packet_v4``.
"""
