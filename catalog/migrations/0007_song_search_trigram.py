# The catalog's text search index, built with what each database has: pg_trgm GIN indexes on PostgreSQL, an FTS5
# trigram table kept in step by triggers on SQLite (see catalog/textsearch.py). Other databases get nothing.

from django.db import migrations


def forwards(apps, schema_editor):
    from catalog import textsearch

    textsearch.install(schema_editor.connection)


def backwards(apps, schema_editor):
    from catalog import textsearch

    textsearch.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0006_song_recording'),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
