"""Mail authentication: DKIM signing and verification, SPF, DMARC, Authentication-Results.

:mod:`.dkim`, :mod:`.spf` and :mod:`.dmarc` each answer one question and do blocking DNS
through :mod:`.dns`; :mod:`.results` writes the answers down (RFC 8601); :mod:`.inbound` applies
them to mail arriving on the MX listener; :mod:`.records` lists what an operator must publish.
"""
