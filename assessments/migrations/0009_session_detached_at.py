from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('assessments', '0008_session_end_server_drain'),
    ]

    operations = [
        migrations.AddField(
            model_name='tutorsession',
            name='detached_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
