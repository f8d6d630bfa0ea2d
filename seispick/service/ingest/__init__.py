"""Where data come from: watched folders and file replay here, the SeedLink client in ``seispick.seedlink``.

Every source (a ``seispick.feed.Source``) hands decoded traces to one callback (``manager.SourceManager``);
files that are not plain miniSEED (SAC, compressed) are read through ``seispick.picking.waveforms``, the
CLI's input path.
"""
