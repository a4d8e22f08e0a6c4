"""Collaborative code-editing server: Socket.IO rooms persisted to MongoDB or SQLite."""
