"""The grader's own minimal client: framing, type tables and an asyncio connection.

Deliberately independent of ``services/`` and ``clients/`` (a self-test checks the
imports), so a bug shared by the exchange and its SDK cannot hide from the grader.
"""
