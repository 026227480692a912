"""Orchestration: load -> validate -> (observe -> plan -> apply) -> record. No printing here."""
