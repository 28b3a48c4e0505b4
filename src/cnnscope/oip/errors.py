"""The OIP package's user-facing error."""

from __future__ import annotations

from cnnscope.errors import CnnscopeError


class OIPError(CnnscopeError, ValueError):
    """A bad OIP request (layer, map, wavelength, steps…); the message lists what is valid."""
