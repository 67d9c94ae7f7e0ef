"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL; the
service knows whether one is due without loading Alembic."""

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from persistence import db, migrate, schema_version


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


def test_the_service_knows_the_newest_revision() -> None:
    assert migrate.head() == schema_version.HEAD


async def test_a_database_is_current_once_migrated(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert not await schema_version.is_current(engine)  # never migrated
        await migrate.upgrade(engine)
        assert await schema_version.is_current(engine)
    finally:
        await engine.dispose()


def test_the_service_does_not_import_alembic_to_start() -> None:
    code = "import sys, persistence.main; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


async def test_the_replies_recorded_before_model_calls_are_their_first_calls(
    database_url: str,
) -> None:
    engine = db.make_engine(database_url)
    try:
        await migrate.upgrade(engine, "0001")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO usage (session_id, message_id, user_id, model, attempt,"
                    " prompt_tokens, completion_tokens, total_tokens, estimated, cost_usd,"
                    " ttft_ms, duration_ms, created_at) VALUES ('s', 'm', 'u', 'gpt', 2, 10,"
                    " 5, 15, false, 0.5, 1.0, 2.0, CURRENT_TIMESTAMP)"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT attempt, total_tokens, outcome, user_id FROM model_calls")
                )
            ).all()
        assert [tuple(row) for row in rows] == [(2, 15, "answered", "u")]
    finally:
        await engine.dispose()


async def test_replicas_starting_together_migrate_one_after_the_other(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite database has one persistence process")
    engines = [db.make_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(engine) for engine in engines))
        assert await migrate.current(engines[0]) == migrate.head()
    finally:
        for engine in engines:
            await engine.dispose()
