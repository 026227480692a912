"""The only modules that talk to Ray (imported lazily): Ray Serve deployments and pipelines on Ray."""
