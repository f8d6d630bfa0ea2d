"""miniseed."""
