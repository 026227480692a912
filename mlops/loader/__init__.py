"""I/O at the edge: the only users of ruamel.yaml, PyYAML and GitPython (files, git history, settings)."""
