"""Unit tests: pure rules and plans, no database. Fakes and hand-built documents, no mocks."""
