"""Which MongoDB the CLI talks to: --uri, else $MONGODB_URI, else the embedded database; and
which Stripe, if any: $STRIPE_API_KEY (and $STRIPE_API_BASE).

A URI may hold a password, so it is never printed: `secrets_in` lists what to scrub from any
message before it is shown. The Stripe key is scrubbed the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote

import stripe
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from billing import Billing, options
from billing.adapters.mongo_errors import translate
from billing.embedded import EmbeddedDatabase
from billing.errors import ConfigurationError, InvalidInput
from billing.gateways import PaymentGateway, StripeGateway

# An unreachable server fails the command (exit 3) instead of hanging a cron job: a run stops at
# the first server selection that times out (DatabaseUnavailable), within about two of these
# (the interrupted transaction's abort waits for one too). Long enough to ride out most
# replica-set elections; a serverSelectionTimeoutMS in the URI wins.
SERVER_SELECTION_TIMEOUT_MS = 10_000
# A Stripe call that hangs fails (and is reported) after this long rather than Stripe's 80 s.
STRIPE_TIMEOUT_S = 30


def database_name(name: str) -> str:
    """A name MongoDB accepts for a database, or InvalidInput (before anything connects)."""
    if options.database_name_problem(name):
        raise InvalidInput(
            f"--database {name!r} is not a valid database name: use up to 63 letters, "
            "digits, '_' or '-'"
        )
    return name


def database_option(given: str | None, default: str) -> str:
    """--database as given, else `default`: only an absent option takes the default. An empty
    name (e.g. `--database "$BILLING_DB"` with the variable unset) is refused like any other
    invalid name (InvalidInput, exit 2), never replaced by the default database."""
    return database_name(default if given is None else given)


def connection_string(uri: str, *, source: str) -> str:
    """`uri` if it is a MongoDB connection string. pymongo would take any other text for a host
    name and fail only after a server selection timeout, as "unreachable"; this says what is
    wrong at once: InvalidInput for --uri (exit 2), ConfigurationError for $MONGODB_URI."""
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return uri
    error = InvalidInput if source == "--uri" else ConfigurationError
    raise error(f"{source} is not a MongoDB connection string: it must start with mongodb:// or "
                "mongodb+srv:// (e.g. mongodb://db1.example.com:27017/?replicaSet=rs0)")


def resolve_uri(uri: str | None) -> str | None:
    """--uri, else $MONGODB_URI (unset or empty: None, the embedded database)."""
    return uri if uri is not None else (os.environ.get("MONGODB_URI") or None)


@contextlib.contextmanager
def billing_for(uri: str | None, database: str, *, notices: TextIO,
                gateway: PaymentGateway | None = None,
                require_schema: bool = True) -> Iterator[Billing]:
    """`Billing` on `database` of the resolved server, with `gateway` for Stripe calls (None:
    none are made); closes the client (and stops the embedded database) on exit. Raises
    ConfigurationError for a bad URI or missing extra, and (unless `require_schema` is False)
    for a database that `billing setup` has not brought to this version."""
    database = database_name(database)
    source = "--uri" if uri is not None else "MONGODB_URI"
    uri = resolve_uri(uri)
    if uri is not None:
        connection_string(uri, source=source)
    with contextlib.ExitStack() as stack:
        if uri is None:
            embedded = stack.enter_context(EmbeddedDatabase())
            print(f"billing: no --uri or MONGODB_URI: started the embedded database "
                  f"(SecantusDB) in {embedded.data_dir}", file=notices, flush=True)
            uri = embedded.uri
        client = stack.enter_context(_client(uri))
        billing = Billing(client, database=database, gateway=gateway)
        if require_schema:
            billing.require_schema()
        yield billing


@contextlib.contextmanager
def stripe_gateway() -> Iterator[StripeGateway | None]:
    """A StripeGateway on $STRIPE_API_KEY, at $STRIPE_API_BASE when set (e.g. a localstripe),
    else None; its HTTP session is closed on exit. Nothing is sent to Stripe here: a rejected
    key surfaces as ConfigurationError from the first call."""
    key = os.environ.get("STRIPE_API_KEY")
    if not key:
        yield None
        return
    base = os.environ.get("STRIPE_API_BASE")
    http = stripe.RequestsClient(timeout=STRIPE_TIMEOUT_S)
    try:
        # A stand-in such as localstripe refuses off_session confirmations: it says so with
        # BILLING_STRIPE_OFF_SESSION=0. Against Stripe keep the default (merchant-initiated).
        off_session = os.environ.get("BILLING_STRIPE_OFF_SESSION", "1") != "0"
        yield StripeGateway(stripe.StripeClient(
            key, base_addresses={"api": base} if base else None, http_client=http),
            off_session=off_session)
    finally:
        http.close()  # type: ignore[no-untyped-call]  # stripe leaves it unannotated


def stripe_key() -> list[str]:
    """$STRIPE_API_KEY, if set: a secret to scrub like a URI's password."""
    key = os.environ.get("STRIPE_API_KEY")
    return [key] if key else []


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
