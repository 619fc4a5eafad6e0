"""Backups and recovery of the payment database: `musdpay backup` (encrypted logical backups of SQLite and
PostgreSQL, with manifests, to a directory or an S3-compatible bucket), PostgreSQL point-in-time recovery (WAL
archiving and base backups), and restore drills. Destinations: payment.backup.destinations."""
