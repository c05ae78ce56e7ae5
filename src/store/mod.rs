//! Persistence behind one API: SQLite by default, PostgreSQL for several instances.
