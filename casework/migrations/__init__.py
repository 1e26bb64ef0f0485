"""Alembic migrations of the desk's schema."""
