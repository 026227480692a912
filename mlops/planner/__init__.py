"""Desired vs live state -> Plan (pure). Filled in by the reconcile issue."""
