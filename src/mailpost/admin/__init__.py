"""Administration of a mailpost installation.

:mod:`mailpost.admin.ops` holds the operations (domains, users, aliases, first-run set-up) as plain
async functions over the store. The ``mailpost`` command line is a thin shell around them, and the
tests and the server call the same functions, so validation and error messages exist once.
"""
