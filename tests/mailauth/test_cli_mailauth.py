"""``mailpost dkim keygen`` and ``mailpost dns-records``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpost.cli import main


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mailpost.toml"
    # data_dir is relative to the working directory, so name it absolutely.
    path.write_text(f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "var"}"\n'
                    '[mailauth]\ndkim_selector = "k2026"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_keygen_prints_records_and_refuses_a_second_run(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--config", str(config_file), "dkim", "keygen", "example.test")
    assert status == 0
    assert "k2026-rsa._domainkey.example.test.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=" in out
    assert "k2026-ed25519._domainkey.example.test.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519" in out
    assert (config_file.parent / "var/dkim/example.test/k2026-rsa.key").is_file()
    status, _, err = run(capsys, "--config", str(config_file), "dkim", "keygen",
                         "example.test", "--selector", "k2026")
    assert status == 1 and "already exists" in err


def test_keygen_rejects_a_path_as_domain(config_file: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "--config", str(config_file), "dkim", "keygen", "../x")
    assert status == 1 and "not a valid DNS name" in err


def test_dns_records_lists_everything_to_publish(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--config", str(config_file), "dkim", "keygen", "example.test")
    status, out, _ = run(capsys, "--config", str(config_file), "dns-records", "example.test")
    assert status == 0
    lines = out.splitlines()
    expected = [
        "example.test.\t3600\tIN\tMX\t10 mail.example.test.",
        'example.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"',
        'mail.example.test.\t3600\tIN\tTXT\t"v=spf1 a -all"',
        ('_dmarc.example.test.\t3600\tIN\tTXT\t"v=DMARC1; p=quarantine; '
         'rua=mailto:postmaster@example.test"'),
        "mta-sts.example.test.\t3600\tIN\tCNAME\tmail.example.test.",
        "_submissions._tcp.example.test.\t3600\tIN\tSRV\t0 1 465 mail.example.test.",
        "_imaps._tcp.example.test.\t3600\tIN\tSRV\t0 1 993 mail.example.test.",
        "_pop3s._tcp.example.test.\t3600\tIN\tSRV\t10 1 995 mail.example.test.",
        "autoconfig.example.test.\t3600\tIN\tCNAME\tmail.example.test.",
        "autodiscover.example.test.\t3600\tIN\tCNAME\tmail.example.test.",
    ]
    for line in expected:
        assert line in lines
    assert any(line.startswith('_mta-sts.example.test.\t3600\tIN\tTXT\t"v=STSv1; id=')
               for line in lines)
    assert any(line.startswith("k2026-rsa._domainkey.example.test.") for line in lines)
    assert any(line.startswith("k2026-ed25519._domainkey.example.test.") for line in lines)
    # RFC 1035 §3.3: no character-string in a TXT record is over 255 octets.
    for line in lines:
        if "\tTXT\t" in line:
            strings = line.split("\tTXT\t", 1)[1].split('" "')
            assert all(len(s.strip('"')) <= 255 for s in strings)


def test_dns_records_without_keys_says_how_to_make_them(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--config", str(config_file), "dns-records", "example.test")
    assert status == 0
    assert "mailpost dkim keygen example.test" in out
    assert "_domainkey" not in out
