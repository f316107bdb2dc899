"""Alembic migrations of the registry index (one revision per schema version: 0001, 0002, ...).

Run explicitly by `ckreg registry upgrade` (`ckreg.registry.schema.upgrade`), never on open.
"""
