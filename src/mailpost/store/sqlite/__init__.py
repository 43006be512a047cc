"""The embedded store: SQLite metadata (WAL, one group-committing writer) plus bodies.

Modules, by responsibility:

* :mod:`.store` — :class:`SQLiteStore`, the adapter that hands each interface call to a thread;
* :mod:`.writer` — the writer thread: group commit, savepoints, commit-then-broadcast;
* :mod:`.reader` — read-only connections on a small thread pool;
* :mod:`.bodies` — the body store: small bodies inside the database, larger ones as files;
* :mod:`.schema` — DDL, migrations (``PRAGMA user_version``) and connection settings;
* :mod:`.directory`, :mod:`.mailboxes`, :mod:`.messages`, :mod:`.delivery`, :mod:`.queue` —
  the SQL of each part of the interface, as plain functions over a connection;
* :mod:`.names` and :mod:`.rows` — validation/normalisation and row conversions.
"""

from __future__ import annotations

from mailpost.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
