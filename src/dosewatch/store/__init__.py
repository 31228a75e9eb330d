"""The trial server's durable record: tables, migrations, imports, assessments, the audit chain."""
