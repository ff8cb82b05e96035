"""Shared pytest set-up: the collection is importable as ansible_collections.tdeops.pg_tde."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Fixtures for the real servers: KMS (PyKMIP, OpenBao, throw-away PKI) and PostgreSQL with
# the pg_tde test double.
pytest_plugins = ['tests.support.fixtures_kms', 'tests.support.fixtures_pg']
