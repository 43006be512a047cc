"""Tests of the MIME layer. ``CORPUS`` is the shared real-world corpus, kept beside the
repository (``../shared/corpus/mime``) as in every checkout and CI run."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "mime"
