# Generated from billing/_async by tools/synchro.py: do not edit.
"""The sync services."""
