"""Which MongoDB the CLI talks to: --uri, else $MONGODB_URI, else the embedded database.

A URI may hold a password, so it is never printed: `secrets_in` lists what to scrub from any
message before it is shown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from billing import Billing
from billing.adapters.mongo_errors import translate
from billing.embedded import EmbeddedDatabase
from billing.errors import ConfigurationError, InvalidInput

# An unreachable server fails the command (exit 3) after this long instead of hanging a cron
# job; a serverSelectionTimeoutMS in the URI wins.
SERVER_SELECTION_TIMEOUT_MS = 10_000
_NOT_IN_DATABASE_NAMES = frozenset('/\\. "$\x00')


def database_name(name: str) -> str:
    """A name MongoDB accepts for a database, or InvalidInput (before anything connects)."""
    if not name or len(name.encode()) > 63 or _NOT_IN_DATABASE_NAMES & set(name):
        raise InvalidInput(
            f"--database {name!r} is not a valid database name: use up to 63 letters, "
            "digits, '_' or '-'"
        )
    return name


def resolve_uri(uri: str | None) -> str | None:
    """--uri, else $MONGODB_URI (unset or empty: None, the embedded database)."""
    return uri if uri is not None else (os.environ.get("MONGODB_URI") or None)


@contextlib.contextmanager
def billing_for(uri: str | None, database: str, *, notices: TextIO) -> Iterator[Billing]:
    """`Billing` on `database` of the resolved server; closes the client (and stops the
    embedded database) on exit. Raises ConfigurationError for a bad URI or missing extra."""
    database = database_name(database)
    uri = resolve_uri(uri)
    with contextlib.ExitStack() as stack:
        if uri is None:
            embedded = stack.enter_context(EmbeddedDatabase())
            print(f"billing: no --uri or MONGODB_URI: started the embedded database "
                  f"(SecantusDB) in {embedded.data_dir}", file=notices, flush=True)
            uri = embedded.uri
        client = stack.enter_context(_client(uri))
        yield Billing(client, database=database)


def _client(uri: str) -> MongoClient[dict[str, Any]]:
    options: dict[str, Any] = {"appname": "billing-cli"}
    if "serverselectiontimeoutms" not in _option_names(uri):
        options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(uri, **options)
    except PyMongoError as exc:
        raise translate(exc) from exc
    except (ValueError, TypeError) as exc:  # pymongo's checks of option values
        raise ConfigurationError(f"invalid MongoDB connection string: {exc}") from exc
    return client


def _option_names(uri: str) -> set[str]:
    query = uri.partition("?")[2]
    return {key.lower() for key, _ in parse_qsl(query, keep_blank_values=True)}


def secrets_in(texts: Iterable[str]) -> list[str]:
    """Passwords of the connection strings among `texts`, as written and percent-decoded."""
    found: list[str] = []
    for text in texts:
        if "://" not in text:
            continue
        authority = text.partition("://")[2].partition("/")[0].partition("?")[0]
        userinfo = authority.rpartition("@")[0]
        password = userinfo.partition(":")[2]
        if password:
            found += [text, password, unquote(password)]
    return sorted(set(found), key=len, reverse=True)  # longest first: scrub whole URIs first


def scrub(message: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message
