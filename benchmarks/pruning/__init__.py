"""The pruning study family: ``describe`` (what it measures on every pipeline) and ``report``."""

#: Each pipeline folder's measurements, written by :mod:`.describe` and read by :mod:`.report`.
ANALYSIS_FILE = 'analysis.json'
