"""The ``mailpost`` command line (mailpost.cli), in-process and through the console script."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailpost import cli, config
from mailpost.auth.apop_key import KEY_FILE, APOPKey
from mailpost.auth.passwords import verify_password
from mailpost.bus import LocalBus
from mailpost.config import Config
from mailpost.store import open_store
from mailpost.store.types import Account

CONFIG_TEXT = """\
hostname = "mx.example.org"
data_dir = "{data_dir}"
[listen]
smtp = "127.0.0.1:2525"
imaps = ["127.0.0.1:2993", "[::1]:2993"]
[limits]
max_recipients = 10
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class Runner:
    """Runs ``main`` in-process against a configuration file in a temporary directory."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.data_dir = tmp_path / "var"
        self.config_path = tmp_path / "mailpost.toml"
        self.config_path.write_text(CONFIG_TEXT.format(data_dir=self.data_dir))
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "", use_config: bool = True) -> Result:
        self._monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = ["--config", str(self.config_path), *args] if use_config else list(args)
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse usage errors, --help, --version
            code = int(exc.code or 0)
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str, stdin: str = "") -> str:
        result = self(*args, stdin=stdin)
        assert result.code == 0, result.err
        assert result.err == ""
        return result.out

    def fails(self, *args: str, stdin: str = "", code: int = 1) -> str:
        result = self(*args, stdin=stdin)
        assert result.code == code, (result.out, result.err)
        if code == 1:
            assert result.err.startswith("mailpost: error: "), result.err
        return result.err

    def account(self, address: str) -> Account | None:
        async def lookup() -> Account | None:
            store = await open_store(self.data_dir, LocalBus())
            try:
                return await store.get_account(address)
            finally:
                await store.close()
        return asyncio.run(lookup())


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    return Runner(tmp_path, capsys, monkeypatch)


# --- domains ---------------------------------------------------------------------------------


def test_domain_lifecycle(run: Runner) -> None:
    assert run.ok("domain", "add", "Example.ORG") == "added domain example.org\n"
    run.ok("domain", "add", "alpha.example")
    assert run.ok("domain", "list") == "alpha.example\nexample.org\n"
    assert run.ok("domain", "remove", "example.org") == "removed domain example.org\n"
    assert run.ok("domain", "list") == "alpha.example\n"
    assert run.data_dir.is_dir()


def test_domain_errors(run: Runner) -> None:
    run.ok("domain", "add", "example.org")
    assert "domain example.org exists already" in run.fails("domain", "add", "example.org")
    assert "invalid domain" in run.fails("domain", "add", "bad_domain.org")
    assert "not a local domain" in run.fails("domain", "remove", "other.example")
    run.ok("user", "add", "a@example.org", "--password", "pw")
    assert "still has users or aliases" in run.fails("domain", "remove", "example.org")


# --- users -----------------------------------------------------------------------------------


def test_user_lifecycle(run: Runner) -> None:
    run.ok("domain", "add", "example.org")
    out = run.ok("user", "add", "Alice@Example.org", "--password", "s3cret", "--quota", "500M")
    assert out == "added user alice@example.org (quota 500M)\n"
    run.ok("user", "add", "bob@example.org", "--password", "pw")
    assert run.ok("user", "list").splitlines() == [
        "ADDRESS            QUOTA      USED  MESSAGES",
        "alice@example.org  500M       0     0",
        "bob@example.org    unlimited  0     0",
    ]
    account = run.account("alice@example.org")
    assert account is not None and account.quota_bytes == 500 * 1024**2
    assert verify_password(account.password_hash, "s3cret")

    run.ok("user", "passwd", "alice@example.org", "--password", "n3w")
    account = run.account("alice@example.org")
    assert account is not None and verify_password(account.password_hash, "n3w")

    assert run.ok("user", "quota", "alice@example.org", "2G") == (
        "quota of alice@example.org is now 2G\n")
    account = run.account("alice@example.org")
    assert account is not None and account.quota_bytes == 2 * 1024**3
    run.ok("user", "quota", "alice@example.org", "none")
    account = run.account("alice@example.org")
    assert account is not None and account.quota_bytes is None

    assert "removed user bob@example.org" in run.ok("user", "remove", "bob@example.org")
    assert run.account("bob@example.org") is None
    assert "bob@" not in run.ok("user", "list")


def test_user_list_empty_prints_nothing(run: Runner) -> None:
    assert run.ok("user", "list") == ""


@pytest.mark.parametrize(("stdin", "password"), [
    ("s3cret\n", "s3cret"),
    ("s3cret\r\n", "s3cret"),
    ("s3cret", "s3cret"),
    (" spaced out \nsecond line\n", " spaced out "),
])
def test_password_stdin(run: Runner, stdin: str, password: str) -> None:
    run.ok("domain", "add", "example.org")
    run.ok("user", "add", "a@example.org", "--password-stdin", stdin=stdin)
    account = run.account("a@example.org")
    assert account is not None and verify_password(account.password_hash, password)
    run.ok("user", "passwd", "a@example.org", "--password-stdin", stdin="other\n")
    account = run.account("a@example.org")
    assert account is not None and verify_password(account.password_hash, "other")


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_empty_password_from_stdin_is_refused_before_opening_the_store(
        run: Runner, stdin: str) -> None:
    err = run.fails("user", "add", "a@example.org", "--password-stdin", stdin=stdin)
    assert err == "mailpost: error: empty password\n"
    assert not run.data_dir.exists()


def test_user_errors(run: Runner) -> None:
    err = run.fails("user", "add", "bob@example.org", "--password", "pw")
    assert err == ("mailpost: error: domain example.org is not a local domain; "
                   "add it with: mailpost domain add example.org\n")
    run.ok("domain", "add", "example.org")
    run.ok("user", "add", "bob@example.org", "--password", "pw")
    assert "user bob@example.org exists already" in run.fails(
        "user", "add", "BOB@example.org", "--password", "pw")
    assert "invalid address" in run.fails("user", "add", "bob", "--password", "pw")
    assert "invalid address" in run.fails("user", "add", "a b@example.org", "--password", "pw")
    assert "empty password" in run.fails("user", "add", "c@example.org", "--password", "")
    assert "invalid size '1.5G'" in run.fails(
        "user", "add", "c@example.org", "--password", "pw", "--quota", "1.5G")
    assert "invalid size" in run.fails("user", "quota", "bob@example.org", "lots")
    assert "no user ghost@example.org" in run.fails("user", "remove", "ghost@example.org")
    assert "no user ghost@example.org" in run.fails(
        "user", "passwd", "ghost@example.org", "--password", "pw")
    assert "no user ghost@example.org" in run.fails("user", "quota", "ghost@example.org", "1G")
    assert run.account("c@example.org") is None


@pytest.mark.parametrize("args", [
    ["user", "add", "a@example.org"],  # neither password option
    ["user", "add", "a@example.org", "--password", "x", "--password-stdin"],
    ["user", "passwd", "a@example.org"],
    ["user", "quota", "a@example.org"],
    ["user", "frobnicate"],
    ["user"],
    ["domain", "add"],
    ["alias", "add", "a@example.org"],
    ["launch"],
    [],
])
def test_usage_errors_exit_2(run: Runner, args: list[str]) -> None:
    err = run.fails(*args, code=2)
    assert "usage: mailpost" in err


# --- aliases ---------------------------------------------------------------------------------


def test_alias_lifecycle(run: Runner) -> None:
    run.ok("domain", "add", "example.org")
    run.ok("user", "add", "alice@example.org", "--password", "pw")
    assert run.ok("alias", "add", "Postmaster@example.org", "alice@example.org") == (
        "added alias postmaster@example.org -> alice@example.org\n")
    run.ok("alias", "add", "postmaster@example.org", "ops@elsewhere.example")
    run.ok("alias", "add", "@example.org", "alice@example.org")
    assert run.ok("alias", "list").splitlines() == [
        "@example.org -> alice@example.org",
        "postmaster@example.org -> alice@example.org",
        "postmaster@example.org -> ops@elsewhere.example",
    ]
    assert run.ok("alias", "remove", "postmaster@example.org", "ops@elsewhere.example") == (
        "removed alias postmaster@example.org -> ops@elsewhere.example\n")
    assert run.ok("alias", "remove", "@example.org") == "removed alias @example.org\n"
    assert run.ok("alias", "list") == "postmaster@example.org -> alice@example.org\n"


def test_alias_errors(run: Runner) -> None:
    assert "domain example.org is not a local domain" in run.fails(
        "alias", "add", "info@example.org", "x@elsewhere.example")
    run.ok("domain", "add", "example.org")
    run.ok("user", "add", "alice@example.org", "--password", "pw")
    run.ok("alias", "add", "info@example.org", "x@elsewhere.example")
    assert "exists already" in run.fails("alias", "add", "info@example.org",
                                         "x@elsewhere.example")
    assert "is a user" in run.fails("alias", "add", "alice@example.org", "x@elsewhere.example")
    assert "invalid address" in run.fails("alias", "add", "info@example.org", "nobody")
    assert "invalid domain" in run.fails("alias", "add", "@nodot", "x@elsewhere.example")
    assert "no alias sales@example.org" in run.fails("alias", "remove", "sales@example.org")


# --- APOP secrets (RFC 1939 §7) ----------------------------------------------------------------


def _set_apop(run: Runner, enabled: bool) -> None:
    text = CONFIG_TEXT.format(data_dir=run.data_dir)
    run.config_path.write_text(text + f"[pop3]\napop = {'true' if enabled else 'false'}\n")


def _apop_secret(run: Runner, address: str) -> str | None:
    """The account's APOP secret, opened with the data directory's key."""
    async def lookup() -> bytes | None:
        store = await open_store(run.data_dir, LocalBus())
        try:
            return await store.get_apop_secret(address)
        finally:
            await store.close()
    sealed = asyncio.run(lookup())
    if sealed is None:
        return None
    return APOPKey.for_data_dir(run.data_dir).open(address, sealed)


def test_apop_off_stores_no_secret_and_no_key(run: Runner) -> None:
    run.ok("domain", "add", "example.org")
    assert run.ok("user", "add", "a@example.org", "--password", "pw") == (
        "added user a@example.org (quota unlimited)\n")
    assert _apop_secret(run, "a@example.org") is None
    assert not (run.data_dir / KEY_FILE).exists()


def test_apop_on_seals_the_password_with_a_private_key(run: Runner) -> None:
    _set_apop(run, True)
    run.ok("domain", "add", "example.org")
    assert run.ok("user", "add", "a@example.org", "--password-stdin", stdin="s3cret\n") == (
        "added user a@example.org (quota unlimited, APOP secret stored)\n")
    key_file = run.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _apop_secret(run, "a@example.org") == "s3cret"
    account = run.account("a@example.org")
    assert account is not None and verify_password(account.password_hash, "s3cret")

    key_before = key_file.read_bytes()
    assert run.ok("user", "passwd", "a@example.org", "--password", "n3w") == (
        "changed the password of a@example.org and its APOP secret\n")
    assert _apop_secret(run, "a@example.org") == "n3w"
    assert key_file.read_bytes() == key_before  # one key for the life of the data directory


def test_password_change_with_apop_off_clears_the_secret(run: Runner) -> None:
    _set_apop(run, True)
    run.ok("domain", "add", "example.org")
    run.ok("user", "add", "a@example.org", "--password", "pw")
    run.ok("user", "add", "b@example.org", "--password", "pw2")
    _set_apop(run, False)
    assert _apop_secret(run, "a@example.org") == "pw"  # turning APOP off changes nothing...
    assert run.ok("user", "passwd", "a@example.org", "--password", "other") == (
        "changed the password of a@example.org\n")
    assert _apop_secret(run, "a@example.org") is None  # ...but a password change clears it
    assert _apop_secret(run, "b@example.org") == "pw2"


def test_an_unusable_apop_key_is_an_error(run: Runner) -> None:
    _set_apop(run, True)
    run.ok("domain", "add", "example.org")
    (run.data_dir / KEY_FILE).write_bytes(b"short")
    (run.data_dir / KEY_FILE).chmod(0o600)
    err = run.fails("user", "add", "a@example.org", "--password", "pw")
    assert "apop.key does not hold a 32-octet key" in err
    assert run.account("a@example.org") is None


def test_check_config_says_whether_apop_is_on(run: Runner) -> None:
    assert "pop3 APOP:     off\n" in run.ok("check-config")
    _set_apop(run, True)
    assert "pop3 APOP:     on\n" in run.ok("check-config")
    assert not run.data_dir.exists()  # checking creates no key either


# --- configuration and check-config -----------------------------------------------------------


def test_check_config_summary(run: Runner) -> None:
    out = run.ok("check-config")
    assert f"configuration: {run.config_path}" in out
    assert "hostname:      mx.example.org" in out
    assert "  smtp         127.0.0.1:2525\n" in out
    assert "  imaps        127.0.0.1:2993, [::1]:2993\n" in out
    assert "  pop3         off\n" in out
    assert "self-signed" in out and str(run.data_dir / "tls") in out
    assert "max_recipients = 10" in out
    assert out.endswith("configuration OK\n")
    assert not run.data_dir.exists()  # checking does not create anything


def test_check_config_defaults_without_a_file(
        run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # away from the fixture's mailpost.toml
    result = run("check-config", use_config=False)
    assert result.code == 0
    assert "built-in development defaults" in result.out
    assert "  pop3s        127.0.0.1:2995\n" in result.out
    assert "limits:        all defaults" in result.out


def test_check_config_with_tls_files(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    with run.config_path.open("a") as handle:
        handle.write(f'[tls]\ncert = "{tmp_path / "c.pem"}"\nkey = "{tmp_path / "k.pem"}"\n')
    assert f"cert {tmp_path / 'c.pem'}, key {tmp_path / 'k.pem'}" in run.ok("check-config")
    (tmp_path / "k.pem").unlink()
    err = run.fails("check-config")
    assert err.startswith("mailpost: error: tls.key: cannot read")


def test_invalid_config_names_the_key(run: Runner) -> None:
    run.config_path.write_text("[limits]\nmax_recipents = 5\n")
    err = run.fails("check-config")
    assert "limits.max_recipents: unknown key" in err
    assert "limits.max_recipents" in run.fails("domain", "list")


def test_unreadable_config(run: Runner, tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "missing.toml"), "domain", "list", use_config=False)
    assert result.code == 1
    assert result.err.startswith("mailpost: error: cannot read")
    assert "missing.toml" in result.err


def test_invalid_toml(run: Runner) -> None:
    run.config_path.write_text("hostname = = 1\n")
    assert "invalid TOML" in run.fails("check-config")


def test_config_option_after_the_command(run: Runner) -> None:
    result = run("check-config", "--config", str(run.config_path), use_config=False)
    assert result.code == 0 and "mx.example.org" in result.out


def test_config_from_environment(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(run.config_path))
    result = run("check-config", use_config=False)
    assert result.code == 0 and f"configuration: {run.config_path}" in result.out


def test_config_from_working_directory(run: Runner) -> None:
    # The fixture's working directory holds the run.config_path file, named mailpost.toml.
    assert run.config_path == Path("mailpost.toml").absolute()
    assert run("domain", "add", "example.org", use_config=False).code == 0
    assert run.ok("domain", "list") == "example.org\n"  # the same store, named explicitly


def test_unusable_data_dir(run: Runner, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run.config_path.write_text(f'data_dir = "{blocker / "sub"}"\n')
    err = run.fails("domain", "list")
    assert "cannot access" in err and str(blocker) in err


def test_serve_calls_the_server_with_the_loaded_config(
        run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []

    def fake_serve(cfg: Config) -> int:
        seen.append(cfg)
        return 7

    monkeypatch.setattr("mailpost.app.serve", fake_serve)
    assert run("serve").code == 7
    assert [cfg.hostname for cfg in seen] == ["mx.example.org"]
    assert seen[0].source == run.config_path


def test_version(run: Runner) -> None:
    result = run("--version", use_config=False)
    assert result.code == 0 and result.out.startswith("mailpost ")


# --- the installed entry point ---------------------------------------------------------------


def _console_script() -> list[str]:
    """The installed ``mailpost`` script next to this interpreter, else ``python -m``."""
    beside = Path(sys.executable).parent / "mailpost"
    found = str(beside) if beside.exists() else shutil.which("mailpost")
    return [found] if found else [sys.executable, "-m", "mailpost"]


def _script(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != config.ENV_VAR}
    return subprocess.run([*_console_script(), "--config", str(tmp_path / "mailpost.toml"),
                           *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)


def test_console_script_while_the_store_is_open_elsewhere(tmp_path: Path) -> None:
    """Administer through the real entry point while another process holds the store open,
    as a running server does; the open store sees the new account."""
    data_dir = tmp_path / "var"
    (tmp_path / "mailpost.toml").write_text(CONFIG_TEXT.format(data_dir=data_dir))

    async def scenario() -> Account | None:
        data_dir.mkdir()
        store = await open_store(data_dir, LocalBus())
        try:
            for args, stdin in ((["domain", "add", "example.org"], ""),
                                (["user", "add", "eve@example.org", "--password-stdin"], "pw\n")):
                done = await asyncio.to_thread(_script, tmp_path, *args, stdin=stdin)
                assert done.returncode == 0, done.stderr
            return await store.get_account("eve@example.org")
        finally:
            await store.close()

    account = asyncio.run(scenario())
    assert account is not None and verify_password(account.password_hash, "pw")
    listed = _script(tmp_path, "user", "list")
    assert listed.returncode == 0 and "eve@example.org" in listed.stdout


def test_console_script_errors(tmp_path: Path) -> None:
    (tmp_path / "mailpost.toml").write_text(CONFIG_TEXT.format(data_dir=tmp_path / "var"))
    failed = _script(tmp_path, "user", "add", "x@nowhere.example", "--password", "pw")
    assert failed.returncode == 1
    assert failed.stderr == ("mailpost: error: domain nowhere.example is not a local domain; "
                             "add it with: mailpost domain add nowhere.example\n")
    usage = _script(tmp_path, "user", "add")
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    (tmp_path / "mailpost.toml").write_text(CONFIG_TEXT.format(data_dir=tmp_path / "var"))
    done = subprocess.run([sys.executable, "-m", "mailpost", "check-config"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if k != config.ENV_VAR})
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
