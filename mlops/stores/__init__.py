"""Backends behind small interfaces: the artifact store (and later the tracking store, prediction log)."""
