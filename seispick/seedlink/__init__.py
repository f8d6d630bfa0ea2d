"""SeedLink and its 512-byte miniSEED 2 records, shared by the service's client and the replay server.

May import: numpy, ObsPy. Never the service, the replay tool, training or torch.
"""
