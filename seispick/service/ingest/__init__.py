"""Where data come from: the SeedLink client, watched folders, file replay, and per-record decoding.

Every source hands decoded traces to one callback (``sources.SourceManager``); files that are not plain
miniSEED (SAC, compressed) are read through ``seispick.picking.waveforms``, the CLI's input path.

May import: seispick.models, seispick.seedlink, ObsPy; never the API, the stream runtime or the publisher.
"""
