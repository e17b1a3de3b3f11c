# Generated from billing/_async by tools/synchro.py: do not edit.
"""The only door to the database: one module per collection (or family of collections).

Services read, decide through a pure plan (billing/plans) and write through these modules;
they never open a collection, build a query or import pymongo themselves. Functions that read
tenant data take `org_id` and put it in every filter. Reads take the transaction they run in
(`AsyncTransaction`) or, outside one, the unit of work's `direct` access; writes inside a
transaction are returned as data (`billing.adapters.writes.Write`) for the plan to apply.
Engine-specific query shapes and index hints live here too, never in a service.
"""
