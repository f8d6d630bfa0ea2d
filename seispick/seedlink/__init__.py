"""SeedLink 3.1 and 4.0, both ends: the protocol pieces once, the client and the server dialects beside them.

- ``protocol``: what both ends speak: selectors (3.1 ``Selector``, 4.0 ``StreamPattern``), the time formats
  (3.1, ISO, INFO XML), sequence numbers and their moduli, the 3.1 packet signatures.
- ``packet_v4``: the SeedLink 4 ``SE`` packet header, packed by the server and parsed by the client.
- ``stream_specs``: which streams a client asks for (``NET_STA[:SELECTORS]`` lines, station files).
- ``client``: the ingest source (``client.source.SeedLinkSource``): its handshake commands
  (``client.commands``), one TCP connection's framing and listings (``client.connection``), its settings
  (``client.source_config``).
- ``server``: the replay server's sessions (``server.session``), the version dialects (``server.dialect``,
  ``server.dialect_v3``, ``server.dialect_v4``), start rules (``server.requests``), packet buffers and
  the replay clock (``server.ring``) and INFO documents (``server.info``); ``seispick.replay`` serves them.

The records themselves are miniSEED (``seispick.miniseed``). What this package may import: ``.importlinter``.
"""
