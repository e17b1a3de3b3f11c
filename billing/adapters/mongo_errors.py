"""Translate pymongo errors into the billing error tree, at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pymongo.errors import (
    ConfigurationError as MongoConfigurationError,
)
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from billing.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    TransientDatabaseError,
)

# Server codes that mean "try again": WriteConflict, LockTimeout, NoSuchTransaction,
# TransactionExceededLifetimeLimitSeconds, interrupted by step-down, not primary...
_TRANSIENT_CODES = frozenset({112, 24, 251, 290, 11600, 11602, 10107, 13435, 189, 91, 262, 50})
_NO_TRANSACTIONS = frozenset({20, 263})  # IllegalOperation, OperationNotSupportedInTransaction


def translate(exc: PyMongoError) -> DatabaseError | ConfigurationError:
    """Map a pymongo error to ours; the message never includes the URI (it may hold a password)."""
    name = type(exc).__name__
    if isinstance(exc, MongoConfigurationError):
        return ConfigurationError(f"MongoDB configuration error ({name}): {_brief(exc)}")
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationFailure) and code in _NO_TRANSACTIONS:
        return ConfigurationError(
            f"the server refused a transaction ({_brief(exc)}): billing needs a replica set or "
            "sharded cluster; see docker-compose.yml for one"
        )
    if (
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("UnknownTransactionCommitResult")
        or exc.has_error_label("RetryableWriteError")
        or isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError)
        or code in _TRANSIENT_CODES
    ):
        if isinstance(exc, ServerSelectionTimeoutError):
            return DatabaseUnavailable(
                "MongoDB is unreachable (server selection timed out): check the URI, the network "
                "and that the replica set has a primary; nothing was written"
            )
        if isinstance(exc, ConnectionFailure) and code is None:
            return TransientDatabaseError(
                f"lost the connection to MongoDB ({name}): the server may be down or "
                "unreachable; what was not committed was rolled back: retry the same call"
            )
        return TransientDatabaseError(
            f"temporary database failure ({name}, code {code}); the transaction was rolled back "
            "and nothing was written: retry the same call"
        )
    return DatabaseError(f"database operation failed ({name}, code {code}): {_brief(exc)}")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Reads outside the unit of work (sync or async code alike): any PyMongoError leaves as
    its billing error, e.g. `with translated(): doc = await coll.find_one(...)`."""
    try:
        yield
    except PyMongoError as exc:
        raise translate(exc) from exc


def _brief(exc: PyMongoError) -> str:
    text = str(exc).split(", full error:")[0]
    return text if len(text) <= 300 else text[:297] + "..."
