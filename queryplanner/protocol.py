"""The sync protocol's messages as values: parse and encode requests, events and error bodies.

Pure and shared: the server parses requests and encodes events with it, a Python client encodes
requests and parses events with it. Parsing checks the *shape* of a message (types, required
fields, id formats); checking a query or a row against the schema is the job of
``validate.parse_query`` and ``wire.decode_row``. Every malformed message raises
``ProtocolError`` naming the field, never ``KeyError``/``TypeError``.

See docs/protocol.md for the narrative. Event names and their data:

    hello       Hello          once, first on every stream
    poke        Poke           rows to put/delete, completed queries, mutation outcomes
    reset       Reset          discard every server-derived row; re-hydration follows
    queryError  QueryErrorEvent a desired query was dropped
    schema      SchemaEvent    the server's schema changed while the stream is open
    error       ErrorEvent     the server closes the stream after this
    rows/complete/result       one-shot and live results of POST /query
"""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import orjson
import pybase64

from .errors import QueryPlannerError

PROTOCOL_VERSION = 1
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
QUERY_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_TTL_SECONDS = 7 * 24 * 3600

MutationOp = Literal["insert", "update", "upsert", "delete"]
MUTATION_OPS: tuple[MutationOp, ...] = ("insert", "update", "upsert", "delete")
MutationStatus = Literal["applied", "rejected"]
ResumeKind = Literal["fresh", "resumed", "reset"]

# Error codes and the HTTP status each one travels with.
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "schema_version": 409,
    "mutation_order": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid_query": 422,
    "invalid_row": 422,
    "overloaded": 503,
    "internal": 500,
}


class ProtocolError(QueryPlannerError):
    """A protocol message does not have the documented shape. ``field`` names the bad part."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


# -- small checked accessors ---------------------------------------------------------------


def _obj(doc: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ProtocolError(where, f"Expected a JSON object, not {_kind(doc)}.")
    return doc


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _only(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise ProtocolError(
                f"{where}.{key}" if where else str(key),
                f"Unknown field {key!r}; expected {', '.join(sorted(allowed))}.",
            )


def _int(doc: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProtocolError(
            _path(where, key), f"{key!r} must be an integer >= {minimum}, not {_kind(value)}."
        )
    return value


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def parse_client_id(value: Any, where: str = "clientId") -> str:
    if not isinstance(value, str) or not CLIENT_ID.match(value):
        raise ProtocolError(
            where, "The client id must be 8 to 64 characters of letters, digits, '_' or '-'."
        )
    return value


def parse_row_encoding(value: str | None) -> bool:
    """The ``rows`` parameter of ``GET /sync``: True when hydrations may come as Arrow."""
    if value is None or value == "json":
        return False
    if value == "arrow":
        return True
    raise ProtocolError("rows", f"Unknown row encoding {value!r:.40}; use 'json' or 'arrow'.")


def parse_schema_version(value: Any, where: str = "schemaVersion") -> int:
    """A schema version from a body field (int) or a query parameter (decimal string)."""
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError(
            where, f"The schema version must be a positive integer, not {value!r:.40}."
        )
    return value


def loads(body: bytes) -> Any:
    """Decode a JSON request body; a ProtocolError (not ValueError) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("", f"The body is not valid JSON: {exc}.") from None


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryAdd:
    """One desired query: its canonical id, its JSON AST (checked later) and an optional TTL."""

    id: str
    query: Any
    ttl: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "query": self.query}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        return out


@dataclass(frozen=True)
class QueriesRequest:
    """``POST /queries``: change the client's desired query set."""

    client_id: str
    schema_version: int
    add: tuple[QueryAdd, ...] = ()
    remove: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "schemaVersion": self.schema_version,
            "add": [a.to_json() for a in self.add],
            "remove": list(self.remove),
        }


_QUERIES_KEYS = frozenset({"clientId", "schemaVersion", "add", "remove"})


def parse_queries_request(doc: Any) -> QueriesRequest:
    d = _obj(doc, "")
    _only(d, _QUERIES_KEYS, "")
    adds: list[QueryAdd] = []
    raw_add = d.get("add", [])
    if not isinstance(raw_add, list):
        raise ProtocolError("add", f"'add' must be a list, not {_kind(raw_add)}.")
    for i, item in enumerate(raw_add):
        where = f"add[{i}]"
        a = _obj(item, where)
        _only(a, frozenset({"id", "query", "ttl"}), where)
        qid = a.get("id")
        if not isinstance(qid, str) or not QUERY_ID.match(qid):
            raise ProtocolError(f"{where}.id", "A query id is 16 lower-case hex digits.")
        if "query" not in a:
            raise ProtocolError(f"{where}.query", "The query's JSON AST is missing.")
        ttl = a.get("ttl")
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not 0 <= ttl <= MAX_TTL_SECONDS
        ):
            raise ProtocolError(
                f"{where}.ttl", f"ttl must be a number of seconds from 0 to {MAX_TTL_SECONDS}."
            )
        adds.append(QueryAdd(qid, a["query"], None if ttl is None else float(ttl)))
    raw_remove = d.get("remove", [])
    if not isinstance(raw_remove, list) or not all(
        isinstance(r, str) and QUERY_ID.match(r) for r in raw_remove
    ):
        raise ProtocolError("remove", "'remove' must be a list of query ids (16 hex digits).")
    return QueriesRequest(
        parse_client_id(d.get("clientId")),
        parse_schema_version(d.get("schemaVersion")),
        tuple(adds),
        tuple(raw_remove),
    )


@dataclass(frozen=True)
class Mutation:
    """One write. ``row`` for insert/upsert, ``key`` + ``set`` for update, ``key`` for delete.

    Values are still in wire form; the server decodes them against the table.
    """

    id: int
    op: MutationOp
    table: str
    row: Mapping[str, Any] | None = None
    key: Any = None
    set: Mapping[str, Any] | None = None
    if_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "op": self.op, "table": self.table}
        if self.row is not None:
            out["row"] = dict(self.row)
        if self.key is not None:
            out["key"] = self.key
        if self.set is not None:
            out["set"] = dict(self.set)
        if self.if_version is not None:
            out["ifVersion"] = self.if_version
        return out


@dataclass(frozen=True)
class MutateRequest:
    """``POST /mutate``: a batch applied in one transaction, in order."""

    client_id: str
    schema_version: int
    mutations: tuple[Mutation, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "schemaVersion": self.schema_version,
            "mutations": [m.to_json() for m in self.mutations],
        }


def parse_mutation(doc: Any, where: str) -> Mutation:
    m = _obj(doc, where)
    _only(m, frozenset({"id", "op", "table", "row", "key", "set", "ifVersion"}), where)
    mid = _int(m, "id", where, minimum=1)
    op = m.get("op")
    if op not in MUTATION_OPS:
        raise ProtocolError(
            f"{where}.op",
            f"Unknown operation {op!r:.40}; expected one of {', '.join(MUTATION_OPS)}.",
        )
    table = m.get("table")
    if not isinstance(table, str):
        raise ProtocolError(f"{where}.table", f"'table' must be a table name, not {_kind(table)}.")
    row = key = set_ = if_version = None
    if op in ("insert", "upsert"):
        row = _obj(m.get("row"), f"{where}.row")
        for k in ("key", "set"):
            if k in m:
                raise ProtocolError(f"{where}.{k}", f"An {op} carries 'row', not {k!r}.")
    else:
        key = m.get("key")
        if not isinstance(key, list | dict) or not key:
            raise ProtocolError(
                f"{where}.key", "'key' must be the primary key as a list or an object."
            )
        if "row" in m:
            raise ProtocolError(f"{where}.row", f"An {op} carries 'key', not 'row'.")
        if op == "update":
            set_ = _obj(m.get("set"), f"{where}.set")
            if not set_:
                raise ProtocolError(f"{where}.set", "An update needs at least one column in 'set'.")
        elif "set" in m:
            raise ProtocolError(f"{where}.set", "A delete carries no 'set'.")
    if m.get("ifVersion") is not None:
        if op not in ("update", "delete"):
            raise ProtocolError(f"{where}.ifVersion", "ifVersion applies to update and delete.")
        if_version = _int(m, "ifVersion", where, minimum=0)
    return Mutation(mid, op, table, row, key, set_, if_version)


def parse_mutate_request(doc: Any, *, max_mutations: int = 1000) -> MutateRequest:
    d = _obj(doc, "")
    _only(d, frozenset({"clientId", "schemaVersion", "mutations"}), "")
    raw = d.get("mutations")
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("mutations", "'mutations' must be a non-empty list.")
    if len(raw) > max_mutations:
        raise ProtocolError(
            "mutations", f"The batch has {len(raw)} mutations; the maximum is {max_mutations}."
        )
    muts = tuple(parse_mutation(m, f"mutations[{i}]") for i, m in enumerate(raw))
    for prev, cur in itertools.pairwise(muts):
        if cur.id != prev.id + 1:
            raise ProtocolError(
                "mutations",
                f"Mutation ids in a batch must be consecutive; {cur.id} follows {prev.id}.",
            )
    return MutateRequest(
        parse_client_id(d.get("clientId")), parse_schema_version(d.get("schemaVersion")), muts
    )


@dataclass(frozen=True)
class MutationResult:
    id: int
    status: MutationStatus
    reason: str | None = None
    version: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.version is not None:
            out["version"] = self.version
        return out

    @classmethod
    def from_json(cls, doc: Any, where: str = "result") -> MutationResult:
        d = _obj(doc, where)
        status = d.get("status")
        if status not in ("applied", "rejected"):
            raise ProtocolError(f"{where}.status", f"Unknown mutation status {status!r:.40}.")
        reason = d.get("reason")
        version = d.get("version")
        return cls(
            _int(d, "id", where, minimum=1),
            status,
            reason if isinstance(reason, str) else None,
            version if isinstance(version, int) and not isinstance(version, bool) else None,
        )


@dataclass(frozen=True)
class MutateResponse:
    version: int
    last_mutation_id: int
    results: tuple[MutationResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "lastMutationId": self.last_mutation_id,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, doc: Any) -> MutateResponse:
        d = _obj(doc, "")
        raw = d.get("results")
        if not isinstance(raw, list):
            raise ProtocolError("results", "'results' must be a list.")
        return cls(
            _int(d, "version", ""),
            _int(d, "lastMutationId", ""),
            tuple(MutationResult.from_json(r, f"results[{i}]") for i, r in enumerate(raw)),
        )


@dataclass(frozen=True)
class QueryRequest:
    """``POST /query``: a one-shot (or, with ``live``, a kept-up-to-date) server-side query."""

    schema_version: int
    query: Any
    live: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"schemaVersion": self.schema_version, "query": self.query, "live": self.live}


def parse_query_request(doc: Any) -> QueryRequest:
    d = _obj(doc, "")
    _only(d, frozenset({"schemaVersion", "query", "live", "clientId"}), "")
    if "query" not in d:
        raise ProtocolError("query", "The query's JSON AST is missing.")
    live = d.get("live", False)
    if not isinstance(live, bool):
        raise ProtocolError("live", f"'live' must be true or false, not {_kind(live)}.")
    return QueryRequest(parse_schema_version(d.get("schemaVersion")), d["query"], live)


# -- error bodies --------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorBody:
    """``{"error": {"code", "message", ...extra}}`` of every non-2xx answer."""

    code: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return ERROR_STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    @classmethod
    def from_json(cls, doc: Any) -> ErrorBody:
        err = _obj(_obj(doc, "").get("error"), "error")
        code, message = err.get("code"), err.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError("error", "An error body needs string 'code' and 'message'.")
        return cls(code, message, {k: v for k, v in err.items() if k not in ("code", "message")})


# -- stream events -------------------------------------------------------------------------

Key: TypeAlias = list[Any]
WireRow: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class Hello:
    client_id: str
    user_id: str | None
    server_version: int
    schema_version: int
    server_schema_version: int
    schema_hash: str
    resume: ResumeKind
    last_mutation_id: int
    protocol: int = PROTOCOL_VERSION
    name = "hello"

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "clientId": self.client_id,
            "userId": self.user_id,
            "serverVersion": self.server_version,
            "schemaVersion": self.schema_version,
            "serverSchemaVersion": self.server_schema_version,
            "schemaHash": self.schema_hash,
            "resume": self.resume,
            "lastMutationId": self.last_mutation_id,
        }


@dataclass(frozen=True)
class Poke:
    """One atomic state change at ``version``; the SSE id is the opaque resume cursor."""

    version: int
    put: Mapping[str, list[WireRow]] = field(default_factory=dict)
    delete: Mapping[str, list[Key]] = field(default_factory=dict)
    complete: Mapping[str, int] = field(default_factory=dict)
    mutations: tuple[MutationResult, ...] = ()
    # Rows in columnar form (only to a stream opened with ``rows=arrow``): per table, Arrow
    # IPC streams of wire rows (``queryplanner.wire_arrow``), base64 text in the JSON.
    arrow: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    name = "poke"

    def to_json(self) -> dict[str, Any]:
        doc = {
            "version": self.version,
            "put": dict(self.put),
            "del": dict(self.delete),
            "complete": dict(self.complete),
            "mutations": [m.to_json() for m in self.mutations],
        }
        if self.arrow:
            doc["arrow"] = {
                t: [pybase64.b64encode(b).decode("ascii") for b in blocks]
                for t, blocks in self.arrow.items()
            }
        return doc


@dataclass(frozen=True)
class Reset:
    reason: str
    name = "reset"

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True)
class QueryErrorEvent:
    query_id: str
    error: ErrorBody
    name = "queryError"

    def to_json(self) -> dict[str, Any]:
        return {"queryId": self.query_id, "error": self.error.to_json()["error"]}


@dataclass(frozen=True)
class SchemaEvent:
    server_schema_version: int
    min_client_version: int
    update_needed: bool
    name = "schema"

    def to_json(self) -> dict[str, Any]:
        return {
            "serverSchemaVersion": self.server_schema_version,
            "minClientVersion": self.min_client_version,
            "updateNeeded": self.update_needed,
        }


@dataclass(frozen=True)
class ErrorEvent:
    code: str
    message: str
    name = "error"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class RowsEvent:
    rows: tuple[WireRow, ...]
    name = "rows"

    def to_json(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}


@dataclass(frozen=True)
class CompleteEvent:
    version: int
    name = "complete"

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version}


@dataclass(frozen=True)
class ResultEvent:
    version: int
    rows: tuple[WireRow, ...]
    name = "result"

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "rows": list(self.rows)}


Event: TypeAlias = (
    Hello
    | Poke
    | Reset
    | QueryErrorEvent
    | SchemaEvent
    | ErrorEvent
    | RowsEvent
    | CompleteEvent
    | ResultEvent
)


def encode_event(event: Event) -> tuple[str, bytes]:
    """(SSE event name, JSON data) of an event."""
    return event.name, orjson.dumps(event.to_json())


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _arrow_blocks(doc: Any) -> dict[str, tuple[bytes, ...]]:
    if not isinstance(doc, Mapping):
        raise ProtocolError("poke.arrow", "'arrow' must be an object: table -> base64 blocks.")
    out = {}
    for table, texts in doc.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ProtocolError(f"poke.arrow.{table}", "Expected a list of base64 texts.")
        try:
            # pybase64 (SIMD): the standard library's decoder took a sixth of a 100 MB
            # hydration's time on the client.
            out[str(table)] = tuple(pybase64.b64decode(t, validate=True) for t in texts)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"poke.arrow.{table}", "Not valid base64 text.") from None
    return out


def parse_event(name: str, data: str | bytes | Any) -> Event:
    """An SSE event (name and data as received) -> its value. Unknown names raise."""
    doc = orjson.loads(data) if isinstance(data, str | bytes) else data
    d = _obj(doc, name)
    if name == "hello":
        resume = d.get("resume")
        if resume not in ("fresh", "resumed", "reset"):
            raise ProtocolError("hello.resume", f"Unknown resume kind {resume!r:.40}.")
        return Hello(
            client_id=str(d.get("clientId")),
            user_id=_str_or_none(d.get("userId")),
            server_version=_int(d, "serverVersion", "hello"),
            schema_version=_int(d, "schemaVersion", "hello", minimum=1),
            server_schema_version=_int(d, "serverSchemaVersion", "hello", minimum=1),
            schema_hash=str(d.get("schemaHash")),
            resume=resume,
            last_mutation_id=_int(d, "lastMutationId", "hello"),
            protocol=_int(d, "protocol", "hello", minimum=1),
        )
    if name == "poke":
        put, dele, complete = d.get("put", {}), d.get("del", {}), d.get("complete", {})
        if (
            not isinstance(put, Mapping)
            or not isinstance(dele, Mapping)
            or not isinstance(complete, Mapping)
        ):
            raise ProtocolError("poke", "put, del and complete must be objects.")
        muts = d.get("mutations", [])
        if not isinstance(muts, list):
            raise ProtocolError("poke.mutations", "'mutations' must be a list.")
        return Poke(
            _int(d, "version", "poke"),
            {str(t): list(rows) for t, rows in put.items()},
            {str(t): list(keys) for t, keys in dele.items()},
            {str(q): int(v) for q, v in complete.items()},
            tuple(MutationResult.from_json(m, f"poke.mutations[{i}]") for i, m in enumerate(muts)),
            _arrow_blocks(d.get("arrow", {})),
        )
    if name == "reset":
        return Reset(str(d.get("reason", "")))
    if name == "queryError":
        return QueryErrorEvent(
            str(d.get("queryId")), ErrorBody.from_json({"error": d.get("error")})
        )
    if name == "schema":
        return SchemaEvent(
            _int(d, "serverSchemaVersion", "schema", minimum=1),
            _int(d, "minClientVersion", "schema", minimum=1),
            bool(d.get("updateNeeded")),
        )
    if name == "error":
        return ErrorEvent(str(d.get("code")), str(d.get("message")))
    if name == "rows":
        rows = d.get("rows")
        if not isinstance(rows, list):
            raise ProtocolError("rows.rows", "'rows' must be a list.")
        return RowsEvent(tuple(rows))
    if name == "complete":
        return CompleteEvent(_int(d, "version", "complete"))
    if name == "result":
        rows = d.get("rows")
        if not isinstance(rows, list):
            raise ProtocolError("result.rows", "'rows' must be a list.")
        return ResultEvent(_int(d, "version", "result"), tuple(rows))
    raise ProtocolError("event", f"Unknown event {name!r:.40}.")


# -- the resume cursor ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The SSE id of a poke: ``"<version>.<seq>.<epoch>"``, opaque to clients.

    ``seq`` numbers the pokes sent to one client (two pokes may share a version: a hydration
    right after a live change), ``epoch`` names the server process, so that a cursor from
    before a restart is recognised and answered with a reset.
    """

    version: int
    seq: int
    epoch: str

    def __str__(self) -> str:
        return f"{self.version}.{self.seq}.{self.epoch}"


def parse_cursor(text: str | None) -> Cursor | None:
    """The cursor of a ``Last-Event-ID``; None when absent or not one of ours."""
    if not text:
        return None
    parts = text.strip().split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
        return None
    if len(parts[0]) > 18 or len(parts[1]) > 18:
        return None
    return Cursor(int(parts[0]), int(parts[1]), parts[2])
