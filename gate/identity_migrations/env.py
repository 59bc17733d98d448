"""Alembic environment for the reference identity service's registry.

Kept apart from the audit trail's (its own version table), because the two
schemas may live in different databases and evolve on their own.
"""
from alembic import context

from gate.identity_service import Base

IDENTITY_MIGRATION_LOCK = 0x6964656E74  # 'ident'


def run() -> None:
    connection = context.config.attributes["connection"]
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({IDENTITY_MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table="identity_alembic_version", render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run()
