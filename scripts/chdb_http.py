#!/usr/bin/env python3
"""A test server for the connector's `clickhouse` module: the subset of ClickHouse's HTTP
interface the module uses, in front of chDB (PyPI `chdb`, the ClickHouse engine embedded as a
library).

THIS IS NOT A CLICKHOUSE SERVER. Every statement is parsed and executed by the real ClickHouse
engine (a persistent chDB session: MergeTree, DateTime64, UUID, JSONEachRow, settings,
insert deduplication), but the HTTP layer, the user check and the mapping of exception codes to
HTTP statuses are this script's, written after ClickHouse's `HTTPHandler` and
`exceptionCodeToHTTPStatus`. It exists because no ClickHouse server recent enough for the
module's schema can be installed on a Debian bookworm machine (its `clickhouse-server` 18.16
has neither `DateTime64` nor `insert_deduplication_token`).

What it serves:

- `GET /` and `GET /ping`: `Ok.`
- `POST /` (and `GET /`, read-only): the statement is the `query` URL parameter followed by a
  newline and the request body (so `INSERT ... FORMAT JSONEachRow` in `query` with the rows
  in the body works, as on a server), or the body alone, or `query` alone.
- `database`: the current database for the statement (code 81 when it does not exist).
- `default_format`: the output format when the statement has no `FORMAT` of its own
  (TabSeparated).
- Credentials: `X-ClickHouse-User` / `X-ClickHouse-Key`, HTTP basic auth, or the `user` /
  `password` parameters; checked against `--user` / `--password`. A mismatch is code 516
  `AUTHENTICATION_FAILED` with HTTP 403, as on a server.
- Every other URL parameter is a query setting, applied with `SET` for that statement only
  (an unknown setting is code 115, HTTP 404).
- Errors: `Code: N. DB::Exception: ... (NAME) (version V)` with the HTTP status ClickHouse
  gives that code and the `X-ClickHouse-Exception-Code` header.

Statements run one at a time (one session behind a lock). The session uses the server's default
`date_time_input_format = basic` (chDB itself defaults to `best_effort`), so the module is not
tested against a laxer parser than a server's.

    python3 scripts/chdb_http.py --host 127.0.0.1 --port 8123 --path DIR \
        [--user default] [--password '']
"""

import argparse
import base64
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

# exceptionCodeToHTTPStatus (ClickHouse src/Server/HTTP/exceptionCodeToHTTPStatus.cpp), by
# exception name; anything else is 500.
STATUS_BY_NAME = {
    "REQUIRED_PASSWORD": 401,
    "UNKNOWN_USER": 403,
    "WRONG_PASSWORD": 403,
    "AUTHENTICATION_FAILED": 403,
    "SET_NON_GRANTED_ROLE": 403,
    "ACCESS_DENIED": 403,
    **{
        name: 400
        for name in (
            "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
            "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME "
            "CANNOT_PARSE_NUMBER CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 "
            "CANNOT_PARSE_IPV6 CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID "
            "DUPLICATE_COLUMN ILLEGAL_COLUMN UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE "
            "THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR "
            "INCORRECT_DATA TYPE_MISMATCH VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"
        ).split()
    },
    **{
        name: 404
        for name in (
            "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
            "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING "
            "UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE "
            "UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE"
        ).split()
    },
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
}

READ_ONLY = re.compile(r"^\s*(SELECT|SHOW|DESC|DESCRIBE|EXISTS|WITH|EXPLAIN)\b", re.IGNORECASE)
CODE = re.compile(r"Code:\s*(\d+)")
NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")


class QueryError(Exception):
    """A ClickHouse exception: its code, name and message."""

    def __init__(self, code, name, message):
        super().__init__(message)
        self.code, self.name, self.message = code, name, message

    @classmethod
    def from_engine(cls, err):
        text = str(err).strip()
        code = int(m.group(1)) if (m := CODE.search(text)) else 1001
        name = m.group(1) if (m := NAME.search(text)) else "STD_EXCEPTION"
        return cls(code, name, text)


def quote_string(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(text):
    return "`" + text.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Engine:
    """One chDB session; statements run one at a time."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.session = chdb_session.Session(path)
        self.version = self._run("SELECT version()", "TabSeparated").decode().strip()
        self._run("SET date_time_input_format = 'basic'", "TabSeparated")

    def _run(self, sql, fmt):
        try:
            return self.session.query(sql, fmt).bytes()
        except Exception as err:  # chdb raises its own ChdbError (a RuntimeError)
            raise QueryError.from_engine(err) from None

    def execute(self, sql, database, settings, fmt):
        with self.lock:
            if database:
                exists = self._run(
                    "SELECT count() FROM system.databases WHERE name = " + quote_string(database),
                    "TabSeparated",
                )
                if exists.strip() != b"1":
                    raise QueryError(81, "UNKNOWN_DATABASE", f"Database {database} does not exist")
                self._run("USE " + quote_ident(database), "TabSeparated")
            else:
                self._run("USE default", "TabSeparated")
            applied = []
            try:
                for name, value in settings:
                    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                        raise QueryError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
                    self._run(f"SET {name} = {quote_string(value)}", "TabSeparated")
                    applied.append(name)
                return self._run(sql, fmt)
            finally:
                for name in applied:
                    try:
                        self._run(f"SET {name} = DEFAULT", "TabSeparated")
                    except QueryError:
                        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http-shim"
    engine = None
    user = "default"
    password = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, err):
        version = self.engine.version if self.engine else "unknown"
        message = err.message
        if not message.startswith("Code:"):
            message = f"Code: {err.code}. DB::Exception: {message}. ({err.name})"
        body = f"{message} (version {version})\n".encode()
        self._send(
            STATUS_BY_NAME.get(err.name, 500),
            body,
            [("X-ClickHouse-Exception-Code", str(err.code))],
        )

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _credentials(self, params):
        user = self.headers.get("X-ClickHouse-User")
        key = self.headers.get("X-ClickHouse-Key")
        auth = self.headers.get("Authorization", "")
        if user is None and auth.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                user, key = "", ""
        if user is None:
            user = params.pop("user", "default")
        if key is None:
            key = params.pop("password", "")
        params.pop("user", None)
        params.pop("password", None)
        return user, key

    def _handle(self, read_only):
        url = urlsplit(self.path)
        body = b"" if read_only else self._body()
        if url.path in ("/ping",) or (url.path == "/" and not url.query and not body):
            return self._send(200, b"Ok.\n")
        if url.path != "/":
            return self._send(404, b"There is no handle " + url.path.encode() + b"\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        user, key = self._credentials(params)
        if user != self.user or key != self.password:
            return self._error(
                QueryError(
                    516,
                    "AUTHENTICATION_FAILED",
                    f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                    "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
                )
            )
        query = params.pop("query", "")
        database = params.pop("database", "")
        fmt = params.pop("default_format", "TabSeparated")
        for ignored in ("query_id", "session_id", "session_timeout", "compress", "decompress"):
            params.pop(ignored, None)
        text = body.decode("utf-8", errors="replace")
        sql = f"{query}\n{text}" if query and text else (query or text)
        if not sql.strip():
            return self._error(QueryError(62, "SYNTAX_ERROR", "Empty query"))
        if read_only and not READ_ONLY.match(sql):
            return self._error(
                QueryError(164, "READONLY", f"{user}: Cannot execute query in readonly mode")
            )
        try:
            out = self.engine.execute(sql, database, list(params.items()), fmt)
        except QueryError as err:
            return self._error(err)
        return self._send(200, out, [("X-ClickHouse-Format", fmt)])

    def do_GET(self):
        self._handle(read_only=True)

    def do_POST(self):
        self._handle(read_only=False)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog; the default of 5 refuses bursts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--path", required=True, help="chDB data directory (kept across restarts)")
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    Handler.engine = Engine(args.path)
    Handler.user, Handler.password = args.user, args.password
    server = Server((args.host, args.port), Handler)
    sys.stderr.write(
        f"chdb_http: ClickHouse {Handler.engine.version} (chDB) on http://{args.host}:{args.port}\n"
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
