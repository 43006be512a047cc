"""mailpost: a complete mail server (SMTP, IMAP4, POP3) with sans-I/O protocol cores."""

__version__ = "0.1.0"
