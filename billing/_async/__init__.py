"""The async services: the source from which billing/_sync is generated (tools/synchro.py)."""
