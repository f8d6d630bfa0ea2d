"""``seispick replay``: a SeedLink server replaying archived miniSEED, a tool users run to test a setup.

Not part of the service (the demo mode borrows it). May import: seispick.seedlink. Never the service,
training or torch.
"""
