"""Alembic environment: runs migrations on the engine handed over by payment.core.migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from payment.auth import models as _auth_models  # noqa: F401 - registers the tables
from payment.core.config import Settings
from payment.core.db import Base, create_db_engine
from payment.delivery import models as _delivery_models  # noqa: F401 - registers the tables
from payment.ledgers import models as _ledger_models  # noqa: F401 - registers the tables
from payment.onramp import models as _onramp_models  # noqa: F401 - registers the tables
from payment.reconcile import models as _reconcile_models  # noqa: F401 - registers the tables
from payment.webhooks import models as _webhook_models  # noqa: F401 - registers the tables

target_metadata = Base.metadata
# PostgreSQL advisory lock of the migrations (a fixed bigint no other code of this database uses): two runners at
# once (a Job retried while the first still runs, replicas started with MUSDPAY_AUTO_MIGRATE) take turns, and the
# second finds the schema at head instead of failing halfway through creating it.
MIGRATION_LOCK_KEY = 0x6D75_7364_7061_7901


def run_migrations_online() -> None:
    engine: Engine | None = context.config.attributes.get("engine")
    owned = engine is None
    if engine is None:
        engine = create_db_engine(Settings())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":  # held to the commit; DDL is transactional there
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                context.run_migrations()
            connection.commit()
    finally:
        if owned:
            engine.dispose()


run_migrations_online()
