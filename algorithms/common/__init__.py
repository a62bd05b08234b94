"""What every method folder of ``algorithms/`` needs: feature taps, the time-string parser and the ``weights_only``
checkpoint loader. Copy this folder with any method folder (see README.md)."""
