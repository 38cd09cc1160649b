from django.db import migrations


def create_the_version_row(apps, schema_editor):
    # Every change bumps this one row with a single UPDATE; creating it here,
    # once, leaves concurrent first writers nothing to race over.
    apps.get_model("users", "UserListVersion").objects.get_or_create(pk=1)


class Migration(migrations.Migration):

    dependencies = [
        ("users", "0002_text_validators"),
    ]

    operations = [
        migrations.RunPython(create_the_version_row, migrations.RunPython.noop),
    ]
