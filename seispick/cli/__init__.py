"""The ``seispick`` command line: ``pick``, ``serve``, ``replay``, ``models``, training and evaluation commands.

Training (torch) is imported only lazily through ``lazy.py``/``main.py``, so ``seispick pick`` and ``seispick
serve`` run without torch. ``pick_cmd.py`` reads files through ``seispick.picking.waveforms`` like the HTTP
API; ``pick_plot.py`` draws ``--plot``.
"""
