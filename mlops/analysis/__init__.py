"""Statistics on results: comparisons, drift, quality (pure: numpy/scipy/pandas in, result models out)."""
