"""``seispick replay``: a SeedLink server replaying archived miniSEED, a tool users run to test a setup.

``server``: the asyncio server and its threaded wrapper, on the sessions of ``seispick.seedlink.server``. Not
part of the service (the demo mode borrows it); where it sits: ``.importlinter``.
"""
