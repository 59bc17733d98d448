"""Alembic environment for the audit trail.

`gate.audit.upgrade()` hands us an open connection in a write transaction.
Several gates sharing one PostgreSQL may start together, so migrations run
under an advisory lock and only one of them applies each step.
"""
from alembic import context

import gate.web.auth  # noqa: F401  (the console's tables share the audit metadata)
from gate.audit import Base

AUDIT_MIGRATION_LOCK = 0x6567617465  # 'egate'


def run() -> None:
    connection = context.config.attributes["connection"]
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table="audit_alembic_version", render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `python -m gate audit migrate`")
run()
