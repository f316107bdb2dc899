"""The one error hierarchy.

Every error a user can cause derives from `CkregError`; the CLI turns these
into one clear line and exit code 2, never a traceback. Anything else that
escapes is a crash (exit 4 in the CLI), so a crash never shares an exit code
with a finding (house style, "Findings are data").
"""

from __future__ import annotations


class CkregError(Exception):
    """Base class: a user-facing failure with a message that names the file and the fix."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        self.path = path
        self.hint = hint
        super().__init__(message)

    def render(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(str(self))
        if self.hint:
            parts.append(f" ({self.hint})")
        return "".join(parts)


class UsageError(CkregError):
    """Bad arguments or options."""


class ReadError(CkregError):
    """A file could not be read or parsed as any supported checkpoint format."""


class UnsafeFileError(ReadError):
    """A file would need code execution to load (raised only where refusing is the only option, e.g. scaler reading)."""


class FormatError(ReadError):
    """The bytes are recognised but malformed (truncated zip, bad safetensors header, broken pickle)."""


class ManifestError(CkregError):
    """A manifest failed validation; the message names file, line and field path."""


class DataError(CkregError):
    """A dataset folder or file cannot be used (no episodes, wrong channels)."""


class SpecError(CkregError):
    """An architecture spec is invalid for its family (unknown family, unknown --set key, wrong channels)."""


class AmbiguousFamilyError(SpecError):
    """The weights fit several families equally and nothing names one: the user must (`--family`)."""


class OutputExistsError(CkregError):
    """An output file already exists: ckreg never overwrites (pass --force where a command offers it)."""


class ScalerError(CkregError):
    """A scaler cannot be read, is refused, or does not fit the model."""


class RegistryError(CkregError):
    """The registry is missing, corrupted, locked, or the reference does not resolve."""


class IntegrityError(RegistryError):
    """A blob's bytes no longer match its content address."""


class VerificationError(CkregError):
    """A checkpoint could not be verified (does not load strictly, predicts non-finite values)."""


class FamilyError(CkregError):
    """A family declaration is invalid (a family file, a manifest's `families:`, a plug-in)."""
