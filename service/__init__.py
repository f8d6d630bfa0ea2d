"""The seispick service: HTTP picking API, streaming ingest, publication. Never imports torch or training."""
