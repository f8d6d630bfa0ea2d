"""Real-time picking: the job wiring sources -> per-instrument pickers -> publisher, station states, metrics,
and live association of the stream's own picks.
"""
