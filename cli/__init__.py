"""The ``seispick`` command line."""
