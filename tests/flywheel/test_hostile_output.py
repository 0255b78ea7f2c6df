"""Hostile names, hostile vendors and hostile --out targets, through real CLI commands.

- Names a person controls (file names, selection names, vendor names, query text) print as
  typed: never read as Rich markup, never crashing the printer, never forging a line.
- Names Flywheel gives match the one rule (`flywheel.names`), in full.
- Credentials in LABEL_STUDIO_URL and whatever a vendor echoes (an Authorization header, the
  key) never reach the terminal, an error's str/repr, or the lake.
- ``report --out`` writes a regular file, atomically, and refuses everything else.

Each case: a clear error, exit 1 or 2, no traceback, nothing written, nothing printed that
should not be.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from flywheel import console, names
from flywheel.errors import FlywheelError, InputError, VendorError
from flywheel.lake import Lake
from flywheel.redact import redact
from tests.metrics.builders import add_log, batch

REPO = Path(__file__).resolve().parents[2]
MARKUP = ("[bold]loud[/bold]", "x[/]y", "[red]", "[link=http://evil]click[/link]", ":smile:")
SECRET_ENV = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "FLYWHEEL_WEBHOOK_SECRET")


@pytest.fixture(autouse=True)
def no_vendor_env(monkeypatch):
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)
    assert "Traceback" not in result.output
    return result


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


# -- the printer ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", MARKUP)
def test_the_printer_prints_markup_as_typed(capsys, value):
    console.line("name: ", value)
    console.warn(f"name: {value}")
    console.table([(value, 1)], ["name", "n"], title=value)
    console.error(InputError(f"no selection {value!r}"))
    out, err = capsys.readouterr()
    assert f"name: {value}" in out and f"name: {value}" in err
    assert out.count(value) == 3  # the line, the title and the cell
    assert f"error: no selection {value!r}" in err


def test_control_characters_cannot_forge_lines_or_reach_the_terminal(capsys):
    name = "two\nFORGED: ok\r\x1b[2Jthree\u202eevil\u2028x\x00"
    console.line("file ", name)
    console.table([(name,)], ["file"])
    console.warn(name)
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(line.startswith("FORGED") for line in lines(text))
        assert "\x1b" not in text and "\r" not in text and "\x00" not in text
        assert "\u202e" not in text and "\u2028" not in text
        assert "two\\nFORGED: ok\\r\\x1b[2Jthree\\u202eevil\\u2028x\\x00" in text
    assert len(out.splitlines()) == 3  # the line, the table's header and its one row
    assert len(err.splitlines()) == 1


def test_the_printer_masks_secrets_everywhere(capsys, monkeypatch):
    key = "lsk-" + uuid.uuid4().hex
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", key)
    console.line(f"GET https://ann:hunter2@ls.example/api?token=tok123&page=2 with {key}")
    console.table([("Authorization: Token abc123def456",)], ["header"])
    console.print_json({"url": "https://ann:hunter2@ls.example", "nested": [{"k": key}]})
    out, _ = capsys.readouterr()
    for leak in ("hunter2", "tok123", "abc123def456", key):
        assert leak not in out
    assert "https://***@ls.example/api?token=***&page=2" in out
    assert json.loads(out[out.index("{") :])["nested"] == [{"k": "***"}]


# -- real commands: file names, selection names, values -------------------------------------


@pytest.fixture
def hostile_drives(tmp_path) -> Path:
    """Damaged logs under names a person could give them (folders make "/" possible)."""
    drives = tmp_path / "drives"
    for name in ("[bold]loud.mcap", "x[/]y.mcap", "[red]dir/[/red]z.mcap", "two\nFORGED.mcap"):
        path = drives / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89MCAP0\r\n not really")
    (drives / "esc\x1b[31mred.mcap").write_bytes(b"\x89MCAP0\r\n not really")
    return drives


def test_ingest_and_status_print_hostile_file_names_as_typed(hostile_drives, tmp_path):
    lake = str(tmp_path / "lake")
    result = run("ingest", str(hostile_drives), "--lake", lake)
    assert result.exit_code == 1  # every file quarantined
    text = result.output
    for shown in ("[bold]loud.mcap", "x[/]y.mcap", "[red]dir/[/red]z.mcap", "two\\nFORGED.mcap"):
        assert shown in text
    assert "esc\\x1b[31mred.mcap" in text and "\x1b" not in text
    assert not any(line.startswith("FORGED") for line in lines(text))
    status = run("status", "--lake", lake)
    assert status.exit_code == 0
    assert "\x1b" not in status.output
    assert not any(line.startswith("FORGED") for line in lines(status.output))


@pytest.fixture
def small_lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    add_log(lake, "L1", {"a": 0, "b": 0, "c": 1}, ingested_h=2)
    return lake


@pytest.mark.parametrize(
    "name",
    ["[bold]x", "x[/]y", "ok\n", "two\nFORGED", "..", "../up", "a b", "-x", "x" * 101, "é"],
)
def test_a_selection_name_outside_the_rule_is_refused_and_shown_escaped(small_lake, name):
    lake = str(small_lake.root)
    result = run("mine", "sql", "SELECT scene_id FROM scenes", f"--save={name}", "--lake", lake)
    assert result.exit_code == 1
    assert f"selection name {name!r} is not usable" in result.output  # as typed, escaped
    assert not any(line.startswith("FORGED") for line in lines(result.output))
    assert not (small_lake.root / "selections").exists() or not any(
        (small_lake.root / "selections").iterdir()
    )


def test_the_one_name_rule():
    good = ["a", "A1", "hard-brakes.v1_2", "9", "x" * names.MAX_LENGTH]
    bad = ["", "ok\n", "\nok", "-a", ".a", "_a", "a/b", "a b", "a\x00", "a[b]", "é", "x" * 101]
    assert all(names.is_name(n) for n in good)
    assert not any(names.is_name(n) for n in bad)
    assert not names.is_name(None) and not names.is_name(7)
    with pytest.raises(InputError, match=r"batch name 'ok\\n' is not usable"):
        names.check_name("ok\n", "batch")


def test_values_and_the_query_title_print_as_typed(small_lake):
    query = "SELECT '[bold]loud[/bold]' AS a, 'x[/]y' AS b, 'one' || chr(10) || 'FORGED' AS c"
    result = run("mine", "sql", query, "--lake", str(small_lake.root))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("[bold]loud[/bold]") == 2  # the title (the query) and the cell
    assert "x[/]y" in out and "one\\nFORGED" in out
    assert not any(line.startswith("FORGED") for line in lines(out))


def test_a_vendor_named_with_markup_prints_as_typed_in_the_report(small_lake):
    batch(small_lake, "B1", "[red]acme[/]", 24, {"a": (4, 9), "b": (4, 12)})
    result = run("report", "--lake", str(small_lake.root))
    assert result.exit_code == 0, result.output
    assert "[red]acme[/]" in result.stdout


def test_an_error_naming_a_hostile_value_prints_it_as_typed(small_lake):
    result = run("label", "status", "[bold]nope[/]\nFORGED", "--lake", str(small_lake.root))
    assert result.exit_code == 1
    assert "'[bold]nope[/]\\nFORGED'" in result.output
    assert not any(line.startswith("FORGED") for line in lines(result.output))


# -- secrets: a vendor that echoes what it was sent -----------------------------------------


class EchoServer(http.server.ThreadingHTTPServer):
    """Answers every request with `status`, echoing the request's headers in its body."""

    daemon_threads = True

    def __init__(self, status: int):
        self.status = status
        super().__init__(("127.0.0.1", 0), EchoHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class EchoHandler(http.server.BaseHTTPRequestHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        body = json.dumps(
            {
                "detail": f"rejected Authorization: {self.headers.get('Authorization')}",
                "headers": dict(self.headers),
                "url": f"http://{self.headers.get('Host')}{self.path}",
                "body": sent,
            }
        ).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _echo

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[500, 400, 403])
def echo(request):
    server = EchoServer(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def leaks(key: str, *secrets: str) -> tuple[str, ...]:
    basic = base64.b64encode(b"ann:hunter2").decode()
    return ("hunter2", basic, key, *secrets, "ann:")


def test_credentials_in_the_url_and_echoed_headers_never_print(echo, tmp_path):
    key = "lsk" + uuid.uuid4().hex
    secret = "wh-" + uuid.uuid4().hex
    env = {
        "LABEL_STUDIO_URL": f"http://ann:hunter2@127.0.0.1:{echo.port}",
        "LABEL_STUDIO_API_KEY": key,
        "FLYWHEEL_WEBHOOK_SECRET": secret,
    }
    result = run(
        "label", "webhook", "--register", "--port", "0", "--lake", str(tmp_path / "lake"), env=env
    )
    assert result.exit_code == 1
    assert "error:" in result.output and f"127.0.0.1:{echo.port}" in result.output
    assert "http://***@127.0.0.1" in result.output
    for leak in leaks(key, secret):
        assert leak not in result.output


def test_vendor_errors_mask_credentials_in_str_repr_pickle_and_the_vendor_repr(echo, monkeypatch):
    from labeling.vendors.label_studio import LabelStudioVendor

    key = "lsk" + uuid.uuid4().hex  # not in the environment: the vendor masks its own key
    url = f"http://ann:hunter2@127.0.0.1:{echo.port}"
    vendor = LabelStudioVendor(url, key, timeout=5)
    with pytest.raises(VendorError) as caught:
        vendor.ensure_project()
    error = caught.value
    again = pickle.loads(pickle.dumps(error))
    shown = " ".join([str(error), repr(error), str(again), repr(vendor), vendor.location])
    shown += " " + " ".join(str(v) for v in error.attrs.values())
    for leak in leaks(key):
        assert leak not in shown
    assert "***" in shown


def test_stored_vendor_text_is_redacted(small_lake, monkeypatch):
    from flywheel import events
    from labeling import _store

    key = "lsk" + uuid.uuid4().hex
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", key)
    hostile = f"echo: Authorization: Token {key} from https://ann:hunter2@ls.example"
    _store.write_rows(
        small_lake,
        "labels",
        "B9",
        [{"batch_id": "B9", "scene_id": "a", "vendor": "ls", "annotator": hostile}],
        _store.LABEL_SCHEMA,
    )
    events.record(small_lake, ["a"], "labeled", attrs={"note": hostile}, name="hostile")
    masked = "echo: Authorization: Token *** from https://***@ls.example"
    row = small_lake.read_file("labels", "B9").to_pylist()[0]
    assert row["annotator"] == masked
    event = small_lake.read_file("events", "hostile").to_pylist()[0]
    assert json.loads(event["attrs"]) == {"note": masked}


def test_a_flywheel_error_never_holds_a_secret(monkeypatch):
    secret = "s" + uuid.uuid4().hex
    monkeypatch.setenv("FLYWHEEL_WEBHOOK_SECRET", secret)
    error = FlywheelError(
        f"failed with {secret} at https://u:pw@h?api_key=zz", url="https://u:pw@h"
    )
    again = pickle.loads(pickle.dumps(error))
    for text in (str(error), repr(error), error.message, error.url, str(again), again.url):
        assert secret not in text and "pw@" not in text and "zz" not in text
    assert redact("nothing secret here") == "nothing secret here"


# -- report --out ------------------------------------------------------------------------------


@pytest.fixture
def report_lake(small_lake) -> str:
    batch(small_lake, "B1", "acme", 24, {"a": (4, 9), "b": (4, 12)})
    return str(small_lake.root)


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def special_targets(tmp_path: Path) -> list[tuple[str, Path]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    targets = [("a FIFO", fifo), ("a folder", folder)]
    if os.geteuid() == 0:  # a device node like /dev/null (mknod needs root)
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(("a character device", device))
    return targets


def test_report_out_refuses_every_target_that_is_not_a_regular_file(report_lake, tmp_path):
    for kind, target in special_targets(tmp_path):
        before = os.lstat(target)
        for fmt in ("table", "json"):
            result = run("report", "--lake", report_lake, "--out", str(target), "--format", fmt)
            assert result.exit_code == 2, (kind, result.output)
            assert kind in result.output and str(target) in result.output
            assert result.stdout == ""  # no report, no path: nothing was written
            after = os.lstat(target)
            assert (stat.S_IFMT(after.st_mode), after.st_ino) == (
                stat.S_IFMT(before.st_mode),
                before.st_ino,
            )
    assert no_temporaries(tmp_path)
    assert list((tmp_path / "folder").iterdir()) == []


def test_report_out_replaces_a_symlink_and_never_writes_through_it(report_lake, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "report.html"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.html"
    dangling.symlink_to(tmp_path / "nowhere" / "x.html")
    for target in (link, dangling):
        result = run("report", "--lake", report_lake, "--out", str(target))
        assert result.exit_code == 0, result.output
        assert not target.is_symlink() and target.is_file()
        assert "<!doctype html>" in target.read_text()
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "nowhere").exists()
    assert no_temporaries(tmp_path)


def test_report_out_replaces_a_regular_file_atomically_keeping_its_mode(report_lake, tmp_path):
    target = tmp_path / "r.html"
    target.write_text("old")
    target.chmod(0o640)
    old_inode = target.stat().st_ino
    result = run("report", "--lake", report_lake, "--out", str(target), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["html"] == str(target)
    assert target.stat().st_ino != old_inode  # a new file renamed over, not rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert "<!doctype html>" in target.read_text()
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("parent", ["missing", "missing/deeper"])
def test_report_out_in_a_missing_folder_is_a_usage_error_naming_it(report_lake, tmp_path, parent):
    target = tmp_path / parent / "r.html"
    result = run("report", "--lake", report_lake, "--out", str(target))
    assert result.exit_code == 2
    assert f"the folder {target.parent} does not exist" in result.output
    assert not (tmp_path / "missing").exists()  # never created on a guess


def test_report_out_under_a_file_or_naming_a_folder_is_a_usage_error(report_lake, tmp_path):
    (tmp_path / "plain").write_text("x")
    for target in (str(tmp_path / "plain" / "r.html"), str(tmp_path) + "/"):
        result = run("report", "--lake", report_lake, "--out", target)
        assert result.exit_code == 2, result.output
        assert "cannot write" in result.output
    assert (tmp_path / "plain").read_text() == "x"


def test_the_real_command_exits_2_with_one_line_and_no_traceback(report_lake, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "report", "--lake", report_lake, "--out", str(fifo)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: cannot write {fifo}: it exists and is a FIFO; only a regular file is replaced. "
        "Give another path"
    ]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from flywheel.output import atomic_output

    target = tmp_path / "r.html"
    target.write_text("old")
    full = pytest.raises(InputError, match=r"No space left on device; .* is unchanged")
    with full, atomic_output(target) as temp:
        temp.write_text("half a report")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old"
    assert no_temporaries(tmp_path)
