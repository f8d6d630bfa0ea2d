"""The networks: PhaseNet (and its light SeisBench variant), ConvNetQuake, and an independent numpy forward pass of
the original PhaseNet graph for checking conversions."""
