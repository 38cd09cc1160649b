import django.db.models.expressions
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

import users.queries

# What ``icontains`` compares on PostgreSQL (UPPER(column::text)), indexed by
# trigrams so a substring search need not read every row. SQLite has no such
# index: it scans the table (docs/performance.md).
SEARCHED = ("name", "email")


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED:
        schema_editor.execute(
            f"CREATE INDEX users_user_{column}_trgm ON users_user "
            f"USING gin (UPPER({column}::text) gin_trgm_ops)"
        )


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED:
        schema_editor.execute(f"DROP INDEX IF EXISTS users_user_{column}_trgm")


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0005_receipt_fields"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes),
        migrations.AddIndex(
            model_name="user",
            index=models.Index(
                users.queries.SortName("name"),
                django.db.models.expressions.F("id"),
                name="users_user_sort_name",
            ),
        ),
    ]
