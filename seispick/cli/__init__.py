"""The ``seispick`` command line: ``pick``, ``serve``, ``replay``, ``models``, training and evaluation commands.

May import every seispick package; ``seispick.training`` (torch) only lazily through ``lazy.py``, so
``seispick pick`` and ``seispick serve`` run without torch. ``pick.py`` reads files through
``seispick.picking.waveforms`` like the HTTP API; ``plot.py`` draws ``--plot``.
"""
