"""Whether the database is at the schema this code needs, asked without Alembic: the service
loads Alembic (11 MiB it would hold for good) only when there is a migration to run
(`persistence.migrate`)."""

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

HEAD = "0006"
"""The newest migration's revision; `tests/persistence/test_migrate.py` holds it to Alembic's."""


async def is_current(engine: AsyncEngine) -> bool:
    """True when the database's recorded revision is `HEAD`; False when it is another, or the
    database has none (never migrated: no `alembic_version` table)."""
    async with engine.connect() as conn:
        try:
            found = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:  # no such table
            return False
        return list(found.scalars()) == [HEAD]
