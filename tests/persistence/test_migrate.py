"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from persistence import migrate


async def test_upgrade_reaches_head_and_is_idempotent(engine: AsyncEngine) -> None:
    assert await migrate.current(engine) == migrate.head()
    await migrate.upgrade(engine)
    assert await migrate.current(engine) == migrate.head()


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
        )
    assert diff == []
